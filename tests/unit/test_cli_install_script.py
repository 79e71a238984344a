"""Install scripts through the imgfac-nova command: a bad given script is
refused before anything is created, and ``validate --install-script``
shows what a build would feed the installer."""
import json
import os
import re
import subprocess
import sys
import warnings

import jsonschema
import pytest
import yaml
from pykickstart import parser as ksparser
from pykickstart import version as ksversion

TDL = """<template>
  <name>cli script</name>
  <os>
    <name>{name}</name><version>{version}</version><arch>x86_64</arch>
    <install type='url'><url>{url}</url></install>
    <rootpw>Plain Secret 1</rootpw>
  </os>
</template>
"""
URLS = {"Fedora": "http://mirror.example.org/fedora/42/os/",
        "Ubuntu": "http://mirror.example.org/ubuntu/",
        "Debian": "http://mirror.example.org/debian/dists/bookworm/"}
KICKSTART = """url --url=http://mirror.example.org/fedora/42/os/
rootpw --plaintext "Given Secret"
user --name=admin --password=UserSecret --groups=wheel
autopart
{extra}poweroff
%packages
@core
%end
"""


@pytest.fixture
def run(cli_env, config_file, tmp_path):
    env = {k: v for k, v in cli_env.items()
           if k not in ("OS_CLOUD", "OS_AUTH_URL")}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
             config_file, *args], env=env, cwd=str(tmp_path),
            capture_output=True, text=True, timeout=120)
    return run


def tdl(tmp_path, name="Fedora", version="42"):
    path = tmp_path / f"{name}-{version}.tdl"
    path.write_text(TDL.format(name=name, version=version, url=URLS[name]))
    return str(path)


def kickstart(tmp_path, extra=""):
    path = tmp_path / "given.ks"
    path.write_text(KICKSTART.format(extra=extra))
    return str(path)


def store_files(tmp_path):
    store = tmp_path / "store"
    return sorted(os.listdir(store)) if store.exists() else []


def one_error(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("imgfac-nova: error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0].removeprefix("imgfac-nova: error: ")


def strict_parse(text, handler):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parser = ksparser.KickstartParser(ksversion.makeVersion(handler))
        parser.readKickstartFromString(text)
    return parser.handler


def test_bad_given_kickstart_refused_before_anything_is_created(
        run, tmp_path):
    result = run("base_image", "--parameter", "os_plugin", "local",
                 "--file-parameter", "install_script",
                 kickstart(tmp_path, "foo --bar\n"), tdl(tmp_path))
    assert one_error(result) == ("install_script:5: Unknown command: foo "
                                 "(pykickstart, Fedora 42)")
    assert result.stdout == ""
    assert store_files(tmp_path) == []


def test_unclaimed_release_refused_before_anything_is_created(run, tmp_path):
    result = run("base_image", "--parameter", "os_plugin", "local",
                 tdl(tmp_path, version="39"))
    assert one_error(result).startswith(
        "imgfac-nova does not generate kickstarts for Fedora 39 (it does "
        "for Fedora 40-45)")
    assert store_files(tmp_path) == []


def test_validate_shows_the_generated_kickstart(run, tmp_path):
    result = run("validate", "--install-script", "--parameter", "os_plugin",
                 "local", "--parameter", "default_user", "fedora",
                 tdl(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "install script kind: kickstart (generated)")
    assert "Plain Secret" not in result.stdout + result.stderr
    parsed = strict_parse(result.stdout, "F42")
    assert parsed.rootpw.isCrypted
    assert parsed.rootpw.password.startswith("$6$rounds=100000$")
    assert [u.name for u in parsed.user.userList] == ["fedora"]
    assert store_files(tmp_path) == []


def test_validate_shows_a_given_kickstart_with_hashes_only(run, tmp_path):
    result = run("validate", "--install-script", "--parameter", "os_plugin",
                 "local", "--file-parameter", "install_script",
                 kickstart(tmp_path), tdl(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "install script kind: kickstart (given)")
    for secret in ("Given Secret", "UserSecret", "Plain Secret"):
        assert secret not in result.stdout + result.stderr
    parsed = strict_parse(result.stdout, "F42")
    assert parsed.rootpw.isCrypted and parsed.rootpw.password.startswith(
        "$6$")
    assert parsed.user.userList[0].isCrypted
    assert parsed.user.userList[0].password.startswith("$6$")


def test_validate_shows_an_ubuntu_autoinstall(run, tmp_path):
    result = run("validate", "--install-script", tdl(tmp_path, "Ubuntu",
                                                     "24.04"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "install script kind: autoinstall (generated)")
    config = yaml.safe_load(result.stdout)["autoinstall"]
    assert config["shutdown"] == "poweroff"
    assert "Plain Secret" not in result.stdout
    assert re.search(r"'root:\$6\$rounds=100000\$", result.stdout)


def test_validate_shows_a_debian_preseed(run, tmp_path):
    result = run("validate", "--install-script", tdl(tmp_path, "Debian",
                                                     "12"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "install script kind: preseed (generated)")
    assert re.search(r"^d-i passwd/root-password-crypted password \$6\$",
                     result.stdout, re.M)
    assert "Plain Secret" not in result.stdout


def test_validate_with_a_given_preseed_shows_hashes_only(run, tmp_path):
    given = tmp_path / "given.preseed"
    given.write_text("d-i passwd/root-password password Preseed Secret\n"
                     "d-i passwd/root-password-again password Preseed Secret\n"
                     "d-i debian-installer/exit/poweroff boolean true\n")
    result = run("validate", "--install-script", "--file-parameter",
                 "install_script", str(given), tdl(tmp_path, "Debian", "12"))
    assert result.returncode == 0, result.stderr
    assert "Preseed Secret" not in result.stdout
    assert result.stdout.count("d-i passwd/root-password-crypted password $6$") \
        == 2


@pytest.mark.parametrize("args, message", [
    (("--parameter", "default_user", "Bad User"),
     "default_user 'Bad User' is not a valid user name"),
    (("--parameter", "disk_size", "big"),
     "parameter 'disk_size' of plugin local: expected an integer, got 'big'"),
    (("--parameter", "os_plugin", "nope"), "nope"),
])
def test_validate_bad_parameters_one_line(run, tmp_path, args, message):
    result = run("validate", "--install-script", *args,
                 tdl(tmp_path, "Debian", "12"))
    assert message in one_error(result)
    assert result.stdout == ""


def test_validate_install_script_takes_one_template(run, tmp_path):
    result = run("validate", "--install-script", tdl(tmp_path),
                 tdl(tmp_path, "Debian", "12"))
    assert one_error(result) == "--install-script takes one template"


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples")


@pytest.mark.parametrize("example, kind", [
    ("fedora-40.tdl", "kickstart"), ("debian-12.tdl", "preseed"),
    ("ubuntu-24.04-iso.tdl", "autoinstall"), ("test-cloud.tdl", "preseed")])
def test_examples_install_scripts(run, example, kind):
    result = run("validate", "--install-script", "--parameter", "os_plugin",
                 "local", os.path.join(EXAMPLES, example))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"install script kind: {kind} (generated)")
    if kind == "kickstart":
        strict_parse(result.stdout, "F40")
    elif kind == "autoinstall":
        with open(os.path.join(os.path.dirname(__file__), "data",
                               "subiquity-autoinstall-schema.json")) as handle:
            schema = json.load(handle)
        jsonschema.validate(yaml.safe_load(result.stdout)["autoinstall"],
                            schema)

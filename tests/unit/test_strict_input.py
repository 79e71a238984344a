"""Accepted-and-ignored input is refused: unknown parameters (strict mode),
config_drive false with a script the installer reads from the drive."""
import json
import logging
import subprocess
import sys
import threading
import types

import pytest

from imgfac_nova import build
from imgfac_nova import parameters as params
from imgfac_nova import store
from imgfac_nova import template as tdl
from imgfac_nova.plugins import nova
from novaimagebuilder import errors

TEMPLATE = """<template>
  <name>strict</name>
  <os>
    <name>{os}</name><version>{version}</version><arch>x86_64</arch>
    <install type='url'><url>{url}</url></install>
  </os>
</template>
"""
SPECS = (params.Parameter("flavor", "flavor"),
         params.Parameter("timeout", "seconds", type="int"))


def _template(os_name="TestOS", version="1", url="http://example.com/tree/"):
    return tdl.parse_template(TEMPLATE.format(os=os_name, version=version,
                                              url=url), "strict.tdl")


def test_strict_resolve_refuses_an_unknown_parameter_in_one_line():
    with pytest.raises(params.ParameterError) as exc:
        params.resolve(SPECS, {"flavor": "2", "falvor": "3"}, "nova",
                       common=("os_plugin",), strict=True)
    assert str(exc.value) == ("unknown parameter 'falvor' of plugin nova "
                              "(known: flavor, timeout)")


def test_strict_resolve_takes_what_the_front_end_knows():
    typed = params.resolve(SPECS, {"timeout": "5", "os_plugin": "nova"},
                           "nova", common=("os_plugin",), strict=True)
    assert typed == {"timeout": 5, "os_plugin": "nova"}


def test_lenient_resolve_warns_and_keeps_the_value(caplog):
    typed = params.resolve(SPECS, {"falvor": "3"}, "nova")
    assert typed == {"falvor": "3"}
    assert "does not know the parameter 'falvor'" in caplog.text


@pytest.fixture
def stored(plugin_site, tmp_path):
    return store.ImageStore(str(tmp_path / "store"))


def _builder(stored, strict):
    return build.Builder(None, stored, strict_parameters=strict)


def test_a_strict_builder_refuses_an_unknown_parameter_creating_nothing(
        stored):
    with pytest.raises(params.ParameterError,
                       match="^unknown parameter 'bogus' of plugin testos"):
        _builder(stored, True).base_image(_template(), {"bogus": "1"})
    with pytest.raises(params.ParameterError,
                       match="^unknown parameter 'bogus' of plugin testos"):
        _builder(stored, True).target_image("filecopy", {"bogus": "1"},
                                            template=_template())
    assert stored.list() == []


def test_a_chain_knows_the_parameters_of_each_of_its_plugins(stored, tmp_path,
                                                             caplog):
    """A target or push from a template takes the OS plugin's and the cloud
    plugin's parameters; neither plugin's are unknown to the chain."""
    values = {"size": "10", "trailer": "XY", "os_plugin": "testos"}
    job = _builder(stored, True).target_image("filecopy", values,
                                              template=_template())
    assert job.wait(60)
    provider = tmp_path / "provider"
    provider.mkdir()
    job = _builder(stored, False).provider_image(
        "filecopy", str(provider), "let-me-in", values, template=_template())
    assert job.wait(60)
    here = threading.get_ident()  # where the parameters are resolved
    assert [r.getMessage() for r in caplog.records
            if r.thread == here and "does not know the parameter" in
            r.getMessage()] == []
    assert [stored.get(r.identifier).status for r in job.records] == [
        "COMPLETE"] * 3


def test_a_target_of_a_stored_base_refuses_os_parameters(stored):
    """The OS plugin of a stored base uses the parameters it was built
    with: new ones would be ignored, so a strict builder refuses them."""
    base = _builder(stored, True).base_image(_template(), {})
    assert base.wait(30)
    with pytest.raises(params.ParameterError, match="'size' of plugin "
                       "filecloud"):
        _builder(stored, True).target_image(
            "filecopy", {"size": "10"}, base_id=base.image.identifier)


# ---------------------------------------------------------------- config drive

FEDORA_URL = "http://mirror.example.org/fedora/releases/40/Everything/x86_64/os/"
DEBIAN_URL = "http://mirror.example.org/debian/dists/bookworm/main/"
UBUNTU_URL = "http://mirror.example.org/ubuntu/dists/noble/"


#: What the Nova plugin resolves, with no cloud here: a connection whose
#: credentials are no bare token.
RESOLVED = {"conn": types.SimpleNamespace(
    session=types.SimpleNamespace(auth=None))}


def _nova_check(template, **values):
    plugin = nova.NovaOS(None)
    plugin._resolve = lambda parameters, template=None: RESOLVED
    typed = params.resolve(plugin.parameters, values, "nova")
    plugin.check(template, typed)
    return plugin


@pytest.mark.parametrize("os_name, version, url, kind", [
    ("Fedora", "40", FEDORA_URL, "kickstart"),
    ("Ubuntu", "24.04", UBUNTU_URL, "autoinstall"),
])
def test_config_drive_false_refused_for_scripts_read_from_it(os_name, version,
                                                             url, kind):
    with pytest.raises(errors.BuildError) as exc:
        _nova_check(_template(os_name, version, url), config_drive="false")
    assert str(exc.value) == (
        "config_drive is false, but the installer reads its %s from the "
        "config drive: leave config_drive true" % kind)


def test_config_drive_false_is_fine_for_a_preseed_and_true_for_all():
    debian = _nova_check(_template("Debian", "12", DEBIAN_URL),
                         config_drive="false")
    assert debian._backend_args is RESOLVED
    fedora = _nova_check(_template("Fedora", "40", FEDORA_URL))
    assert fedora._backend_args is RESOLVED


def test_a_given_kickstart_needs_the_config_drive_too(caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(errors.BuildError, match="reads its kickstart"):
        _nova_check(_template("Fedora", "40", FEDORA_URL),
                    config_drive="false",
                    install_script="text\nrootpw --lock\npoweroff\n")


def test_the_cli_says_config_drive_false_in_one_line_creating_nothing(
        cli_env, config_file, tmp_path):
    path = tmp_path / "f40.tdl"
    path.write_text(TEMPLATE.format(os="Fedora", version="40", url=FEDORA_URL))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
             config_file, *args], env=cli_env, cwd=str(tmp_path),
            capture_output=True, text=True, timeout=60)
    result = cli("base_image", "--parameter", "os_plugin", "nova",
                 "--parameter", "config_drive", "false", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "imgfac-nova: error: config_drive is false, but the installer reads "
        "its kickstart from the config drive: leave config_drive true")
    assert "Traceback" not in result.stderr
    listed = cli("--output", "json", "images")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []

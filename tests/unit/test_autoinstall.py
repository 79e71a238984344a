"""Subiquity autoinstall for Ubuntu >= 20.04, validated against subiquity's
own published schema (tests/unit/data/README.md)."""

import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

from imgfac_nova.template import parse_template
from novaimagebuilder.scripts import installscript as isc
from novaimagebuilder import pipeline

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests builder"
MIRROR = "http://mirror.example.org:8080/ubuntu/"
with open(os.path.join(os.path.dirname(__file__), "data",
                       "subiquity-autoinstall-schema.json")) as _handle:
    SCHEMA = json.load(_handle)


def ubuntu(version="24.04", rootpw="s3cret pw", install="url", url=MIRROR):
    media = (f'<install type="url"><url>{url}</url></install>'
             if install == "url" else
             '<install type="iso"><iso>http://mirror.example.org/u.iso</iso>'
             '</install>')
    password = f"<rootpw>{rootpw}</rootpw>" if rootpw else ""
    return parse_template(f"""<template><name>Web Server 1</name>
  <os><name>Ubuntu</name><version>{version}</version><arch>x86_64</arch>
    {media}{password}</os></template>""")


def config_of(text):
    """The autoinstall value, as subiquity reads it from cloud-config."""
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert list(data) == ["autoinstall"]
    return data["autoinstall"]


VARIANTS = {
    "url, root password": (dict(), {}),
    "url with dists, locked root, user, key, disk": (
        dict(rootpw=None, url=MIRROR + "dists/noble/main/installer-amd64/"),
        {"default_user": "admin", "ssh_public_key": PUBLIC_KEY,
         "install_disk": "/dev/sda"}),
    "iso, root password, key for root": (dict(install="iso"), {
        "ssh_public_key": PUBLIC_KEY}),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", ["20.04", "22.04", "24.04", "24.10",
                                     "26.04"])
def test_generated_autoinstall_validates_against_subiquitys_schema(
        version, variant):
    template_args, parameters = VARIANTS[variant]
    text, kind = isc.generate(ubuntu(version, **template_args), parameters)
    assert kind == "autoinstall"
    config = config_of(text)
    jsonschema.validate(config, SCHEMA)
    # Every top-level key is one subiquity knows (version 1 warns about and
    # drops unknown ones; later versions refuse them).
    assert set(config) <= set(SCHEMA["properties"])
    assert config["version"] == 1
    assert config["shutdown"] == "poweroff"
    assert {"openssh-server", "cloud-init", "sudo"} <= set(config["packages"])
    assert config["ssh"]["install-server"] is True
    disk = parameters.get("install_disk", "vda").removeprefix("/dev/")
    assert config["storage"] == {"layout": {
        "name": "direct", "match": {"path": f"/dev/{disk}"}}}
    assert "user-data" in config  # subiquity then needs no identity
    if template_args.get("install") == "iso":
        assert "primary" not in config["apt"]
    else:
        assert config["apt"]["primary"] == [
            {"arches": ["default"], "uri": MIRROR.rstrip("/")}]
    assert isc.from_parameter(text) == (text, "autoinstall")


def test_schema_refuses_what_subiquity_refuses():
    # The schema really constrains: our checks would catch a broken config.
    config = config_of(isc.generate(ubuntu())[0])
    for broken in ({"version": 2}, {"shutdown": "halt"},
                   {"packages": "openssh-server"},
                   {"keyboard": {"variant": "x"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict(config, **broken), SCHEMA)


def test_older_ubuntu_keeps_the_preseed():
    text, kind = isc.generate(ubuntu("18.04"))
    assert kind == "preseed"
    assert "d-i mirror/suite string bionic" in text.splitlines()


def test_kernel_argument():
    assert pipeline.SCRIPT_KERNEL_ARGS["autoinstall"] == "autoinstall"


@pytest.mark.parametrize("version, kind", [
    ("19.10", "preseed"), ("20.04", "autoinstall"), ("20.04.6", "autoinstall"),
    ("21", "autoinstall")])
def test_autoinstall_from_20_04_on(version, kind):
    url = MIRROR + "dists/eoan/"
    assert isc.generate(ubuntu(version, url=url))[1] == kind


def test_root_password_only_as_hash():
    text, _ = isc.generate(ubuntu(rootpw="s3cret pw"))
    assert "s3cret" not in text
    entry = re.search(r"printf '%s\\n' 'root:(\$6\$[^']+)' \| chroot /target "
                      r"chpasswd -e", text)
    assert entry, text
    crypted = entry.group(1)
    salt = crypted.split("$")[3]
    assert crypted == subprocess.run(
        ["openssl", "passwd", "-6", "-salt", f"rounds=100000${salt}",
         "-stdin"], input="s3cret pw\n", capture_output=True, text=True,
        check=True).stdout.strip()


def test_late_commands_really_work(tmp_path):
    """Run the late-commands with /target in a temporary directory and
    stand-ins for curtin and chroot that log what they were asked."""
    text, _ = isc.generate(ubuntu(rootpw="pw"), {
        "default_user": "admin", "ssh_public_key": PUBLIC_KEY})
    commands = config_of(text)["late-commands"]
    target = tmp_path / "target"
    for directory in ("etc/cloud/cloud.cfg.d", "home/admin", "etc/sudoers.d"):
        (target / directory).mkdir(parents=True)
    for name in ("cloud.cfg.d/99-installer.cfg", "ds-identify.cfg",
                 "cloud-init.disabled", "cloud.cfg.d/90-other.cfg"):
        (target / "etc" / "cloud" / name).write_text("x\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "curtin").write_text('#!/bin/sh\necho "curtin $*" >> "$LOG"\n')
    (tools / "chroot").write_text(
        '#!/bin/sh\necho "chroot $*" >> "$LOG"; cat >> "$LOG"\n')
    for tool in ("curtin", "chroot"):
        (tools / tool).chmod(0o755)
    log = tmp_path / "log"
    for command in commands:
        subprocess.run(["sh", "-c", command.replace("/target", str(target))],
                       check=True, env={"PATH": f"{tools}:/usr/bin:/bin",
                                        "LOG": str(log)})
    cloud = target / "etc" / "cloud"
    assert sorted(p.name for p in cloud.rglob("*") if p.is_file()) == [
        "90-other.cfg"]
    assert (target / "etc" / "hostname").read_text() == "web-server-1\n"
    sudoers = target / "etc" / "sudoers.d" / "90-imgfac-admin"
    assert sudoers.read_text() == "admin ALL=(ALL) NOPASSWD: ALL\n"
    assert sudoers.stat().st_mode & 0o777 == 0o440
    keys = target / "home" / "admin" / ".ssh" / "authorized_keys"
    assert keys.read_text() == PUBLIC_KEY + "\n"
    assert keys.stat().st_mode & 0o777 == 0o600
    grub = target / "etc" / "default" / "grub.d" / "90-imgfac-console.cfg"
    assert grub.read_text() == ('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX '
                                'console=tty0 console=ttyS0,115200n8"\n')
    calls = log.read_text().splitlines()
    assert calls[0] == f"chroot {target} chpasswd -e"
    assert re.fullmatch(r"root:\$6\$rounds=100000\$\S+", calls[1])
    assert calls[2:] == [
        "curtin in-target -- useradd --create-home --shell /bin/bash "
        "--groups sudo admin",
        "curtin in-target -- chown -R admin:admin /home/admin/.ssh",
        "curtin in-target -- update-grub"]


def test_locked_root_without_user_makes_the_ubuntu_user():
    config = config_of(isc.generate(ubuntu(rootpw=None), {
        "ssh_public_key": PUBLIC_KEY})[0])
    commands = config["late-commands"]
    assert "curtin in-target -- passwd --lock root" in commands
    assert any("useradd" in c and c.endswith(" ubuntu") for c in commands)
    assert any("/target/home/ubuntu/.ssh/authorized_keys" in c
               for c in commands)


# ---------------------------------------------------------------- given

@pytest.mark.parametrize("text, message", [
    ("#cloud-config\nautoinstall:\n  version: 1\n  shutdown: [\n",
     "install_script:5: not valid YAML: "),
    ("#cloud-config\nautoinstall: 3\n", "the autoinstall key must hold a "
     "mapping"),
    ("#cloud-config\nautoinstall:\n  shutdown: poweroff\n",
     "autoinstall needs 'version: 1'"),
    ("#cloud-config\nautoinstall:\n  version: 1\n  shutdown: reboot\n",
     "the autoinstall does not power off at the end; add 'shutdown: "
     "poweroff'"),
])
def test_given_autoinstall_is_checked(text, message):
    with pytest.raises(isc.InstallScriptError) as caught:
        isc.from_parameter(text, ubuntu())
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_given_autoinstall_validation_is_the_basic_one():
    # Keys subiquity may add later are not refused here: the schema is
    # per subiquity release, and the ISO's own subiquity validates.
    text = ("#cloud-config\nautoinstall:\n  version: 1\n  shutdown: poweroff\n"
            "  identity: {hostname: h, username: u, password: '$6$x'}\n"
            "  some-future-key: {}\n")
    assert isc.from_parameter(text, ubuntu()) == (text, "autoinstall")

"""Kickstarts checked by pykickstart, the parser anaconda uses: every
generated one for every claimed release, and operators' scripts."""

import logging
import warnings

import pytest
from pykickstart import constants as ksconstants
from pykickstart import parser as ksparser
from pykickstart import version as ksversion

from imgfac_nova.template import parse_template
from novaimagebuilder.scripts import installscript as isc
from novaimagebuilder.scripts import kickstart as ks

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests builder"
NAMES = {"fedora": "Fedora", "rhel": "RHEL", "redhat": "RedHat",
         "centos": "CentOS-Stream", "rocky": "Rocky", "rockylinux": "RockyLinux",
         "alma": "Alma", "almalinux": "AlmaLinux", "ol": "OL",
         "oraclelinux": "OracleLinux"}
CLAIMS = [(word, major, handler) for word, majors in sorted(ks.CLAIMED.items())
          for major, handler in sorted(majors.items())]
VARIANTS = {
    "url, root password": ("url", "pw", {}),
    "url, locked root, user, key, disk": (
        "url", None, {"default_user": "cloud", "ssh_public_key": PUBLIC_KEY,
                      "install_disk": "/dev/sda"}),
    "iso, root password, key for root": ("iso", "pw", {
        "ssh_public_key": PUBLIC_KEY}),
    "url, UEFI": ("url", "pw", {"firmware": "uefi"}),
}


def template(os_name, version, install="url", rootpw=None):
    media = ('<install type="url"><url>http://mirror.example.org/os/</url>'
             '</install>' if install == "url" else
             '<install type="iso"><iso>http://mirror.example.org/os.iso</iso>'
             '</install>')
    password = f"<rootpw>{rootpw}</rootpw>" if rootpw else ""
    return parse_template(f"""<template><name>ks test</name>
  <os><name>{os_name}</name><version>{version}</version><arch>x86_64</arch>
    {media}{password}</os></template>""")


def strict_parse(text, handler):
    """Parse with pykickstart's ``handler``; any warning is a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parser = ksparser.KickstartParser(ksversion.makeVersion(handler))
        parser.readKickstartFromString(text)
    return parser.handler


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("word, major, handler", CLAIMS)
def test_generated_kickstart_passes_pykickstart(word, major, handler, variant):
    install, rootpw, parameters = VARIANTS[variant]
    text, kind = isc.generate(template(NAMES[word], str(major), install,
                                       rootpw), parameters)
    assert kind == "kickstart"
    parsed = strict_parse(text, handler)
    # What pykickstart read is what the build needs.
    assert parsed.reboot.action == ksconstants.KS_SHUTDOWN
    assert parsed.reboot.currentCmd == "poweroff"
    assert {"openssh-server", "cloud-init", "sudo"} <= set(
        parsed.packages.packageList)
    disk = parameters.get("install_disk", "vda").removeprefix("/dev/")
    assert parsed.ignoredisk.onlyuse == [disk]
    assert "console=ttyS0,115200n8" in parsed.bootloader.appendLine
    if rootpw:
        assert parsed.rootpw.isCrypted and parsed.rootpw.password.startswith(
            "$6$rounds=100000$")
    else:
        assert parsed.rootpw.lock
    if install == "url":
        assert parsed.url.url == "http://mirror.example.org/os/"
    else:
        assert parsed.cdrom.seen
    uefi_packages = {"shim-x64", "grub2-efi-x64"}
    if parameters.get("firmware") == "uefi":
        assert uefi_packages <= set(parsed.packages.packageList)
        assert "--location=mbr" not in text
    else:
        assert not uefi_packages & set(parsed.packages.packageList)
        assert parsed.bootloader.location == "mbr"
    if "default_user" in parameters:
        assert [u.name for u in parsed.user.userList] == ["cloud"]
        assert [(k.username, k.key) for k in parsed.sshkey.sshUserList] == [
            ("cloud", PUBLIC_KEY)]


def test_claims_are_pykickstart_handlers():
    for _, _, handler in CLAIMS:
        assert handler in ksversion.versionMap
    assert ks.describe_claims("Fedora") == "Fedora 40-45"
    assert ks.describe_claims("RHEL-9") == "RHEL 8-10"


@pytest.mark.parametrize("os_name, version, handler", [
    ("Fedora", "40", "F40"), ("Fedora", "45", "F45"), ("RHEL-9", "4", "RHEL9"),
    ("RHEL", "9.4", "RHEL9"), ("CentOS-Stream", "10", "RHEL10"),
    ("CentOS Stream", "9", "RHEL9"), ("Rocky", "8.10", "RHEL8"),
    ("AlmaLinux", "10.0", "RHEL10"),
])
def test_claimed_handler(os_name, version, handler):
    assert ks.claimed_handler(os_name, version) == handler


@pytest.mark.parametrize("os_name, version, claims", [
    ("Fedora", "39", "Fedora 40-45"), ("Fedora", "46", "Fedora 40-45"),
    ("RHEL-7", "9", "RHEL 8-10"), ("CentOS", "8", "CentOS 9-10"),
])
def test_unclaimed_release_is_a_one_line_error(os_name, version, claims):
    with pytest.raises(isc.InstallScriptError) as caught:
        isc.generate(template(os_name, version))
    message = str(caught.value)
    assert message == (
        f"imgfac-nova does not generate kickstarts for {os_name} {version} "
        f"(it does for {claims}); give one with the install_script parameter")


# ---------------------------------------------------------------- given

GOOD = ("url --url=http://mirror.example.org/os/\nrootpw --lock\n"
        "autopart\npoweroff\n%packages\n@core\n%end\n")


def test_given_kickstart_is_checked_for_the_templates_release():
    fedora = template("Fedora", "42")
    assert isc.from_parameter(GOOD, fedora) == (GOOD, "kickstart")
    bad = GOOD.replace("autopart\n", "autopart\nfoo --bar\n")
    with pytest.raises(isc.InstallScriptError) as caught:
        isc.from_parameter(bad, fedora)
    assert str(caught.value) == ("install_script:4: Unknown command: foo "
                                 "(pykickstart, Fedora 42)")


def test_given_kickstart_command_the_release_removed():
    text = "install\n" + GOOD
    with pytest.raises(isc.InstallScriptError, match=(
            r"^install_script:1: install has been removed\. \(pykickstart, "
            r"RHEL-9 4\)$")):
        isc.from_parameter(text, template("RHEL-9", "4"))


def test_given_kickstart_for_an_unclaimed_release_uses_its_handler():
    # RHEL 7 is not claimed, but pykickstart knows it: no sshkey there.
    text = GOOD + 'sshkey --username=root "%s"\n' % PUBLIC_KEY
    assert isc.from_parameter(text, template("RHEL-9", "4"))[1] == "kickstart"
    with pytest.raises(isc.InstallScriptError, match=(
            "install_script:8: Unknown command: sshkey")):
        isc.from_parameter(text, template("RHEL-7", "9"))


def test_given_kickstart_warnings_are_logged(caplog):
    caplog.set_level(logging.WARNING)
    # Deprecated, ignored by anaconda: worth a warning, not a refusal.
    text = "timezone --isUtc UTC\n" + GOOD
    assert isc.from_parameter(text, template("Fedora", "42"))[0] == text
    assert any(r.getMessage().startswith("install_script: ") and "--isUtc" in
               r.getMessage() for r in caplog.records), caplog.text


def test_includes_are_not_followed(tmp_path):
    text = "%include /no/such/file\n" + GOOD
    assert isc.from_parameter(text, template("Fedora", "41"))[1] == \
        "kickstart"


def test_given_script_of_a_non_anaconda_os_is_not_parsed_as_kickstart():
    # The test installer's own format looks like a kickstart.
    text = "disk /dev/vda\nrootpw --lock\npoweroff\n"
    debian = template("Debian", "12")
    assert isc.from_parameter(text, debian) == (text, "kickstart")
    with pytest.raises(isc.InstallScriptError, match="Unknown command: disk"):
        isc.from_parameter(text, template("Fedora", "42"))


def test_rejected_password_line_is_not_quoted():
    text = "rootpw --plaintext Two Words\n" + GOOD
    with pytest.raises(isc.InstallScriptError) as caught:
        isc.from_parameter(text, template("Fedora", "42"))
    assert str(caught.value) == (
        "install_script:1: this rootpw line is not valid (not shown: it holds "
        "a password) (pykickstart, Fedora 42)")

"""ICICLE documents and package lists (recorded output and a real dpkg)."""

import subprocess

import pytest
from lxml import etree

from novaimagebuilder.guest import icicle
from novaimagebuilder.guest import ssh
from tests.unit import sshd

sshd_server = sshd.sshd_server
client_key = sshd.client_key

RPM_OUTPUT = """bash-5.2.26-3.fc40.x86_64
gpg-pubkey-a15b79cc-63d04c2c.(none)
curl-8.6.0-7.fc40.x86_64

acl-2.3.2-1.fc40.x86_64
"""

DPKG_OUTPUT = """ii  adduser_3.134_all
rc  oldpkg_1.0-1_amd64
ii  bash_5.2.15-2+b2_amd64
hi  held_2.0_amd64
"""


class ScriptedGuest:
    """Answers commands with canned output; records them."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def run(self, command, privileged=True, check=True, timeout=None,
            name=None, merge_stderr=True):
        self.calls.append((name, command, privileged, merge_stderr))
        return 0, self.answers[name]


def test_document_shape():
    xml = icicle.icicle_xml(["zsh-5.9", "bash-5.2", "bash-5.2", ""],
                            "A test image")
    assert xml.startswith("<?xml version='1.0' encoding='UTF-8'?>\n<icicle>")
    root = etree.fromstring(xml.encode())
    assert root.tag == "icicle"
    assert [child.tag for child in root] == ["description", "packages"]
    assert root.findtext("description") == "A test image"
    assert [p.get("name") for p in root.iterfind("packages/package")] == [
        "bash-5.2", "zsh-5.9"]
    assert root.find("packages/package/extra") is None


def test_document_without_description_and_with_extras():
    packages = [icicle.Package("b", "two"), icicle.Package("a", "one & <x>")]
    root = etree.fromstring(icicle.icicle_xml(packages).encode())
    assert root.find("description") is None
    entries = [(p.get("name"), p.findtext("extra"))
               for p in root.iterfind("packages/package")]
    assert entries == [("a", "one & <x>"), ("b", "two")]


def test_same_name_with_and_without_extra():
    root = etree.fromstring(icicle.icicle_xml(
        ["a", icicle.Package("a", "x")]).encode())
    entries = [(p.get("name"), p.findtext("extra"))
               for p in root.iterfind("packages/package")]
    assert entries == [("a", None), ("a", "x")]


def test_empty_package_list():
    root = etree.fromstring(icicle.icicle_xml([]).encode())
    assert len(root.find("packages")) == 0


def test_parse_rpm_and_dpkg_output():
    assert icicle.parse_packages("redhat", RPM_OUTPUT) == [
        "bash-5.2.26-3.fc40.x86_64", "gpg-pubkey-a15b79cc-63d04c2c.(none)",
        "curl-8.6.0-7.fc40.x86_64", "acl-2.3.2-1.fc40.x86_64"]
    assert icicle.parse_packages("debian", DPKG_OUTPUT) == [
        "adduser_3.134_all", "bash_5.2.15-2+b2_amd64", "held_2.0_amd64"]


def test_read_packages_runs_the_family_query_sorted():
    guest = ScriptedGuest({"list packages": RPM_OUTPUT})
    packages = icicle.read_packages(guest, "redhat")
    assert [p.name for p in packages] == sorted(
        icicle.parse_packages("redhat", RPM_OUTPUT))
    name, command, privileged, merged = guest.calls[0]
    assert command.startswith("rpm -qa --qf ")
    assert (privileged, merged) == (False, False)


def test_extra_command_lines_pair_with_database_order():
    guest = ScriptedGuest({"list packages": DPKG_OUTPUT,
                           "ICICLE extra command": "x1\nx2\nx3\nx4\n"})
    packages = icicle.read_packages(guest, "debian", "dpkg-query -W -f ...")
    assert packages == [icicle.Package("adduser_3.134_all", "x1"),
                        icicle.Package("bash_5.2.15-2+b2_amd64", "x3"),
                        icicle.Package("held_2.0_amd64", "x4")]
    assert guest.calls[1][1:3] == ("dpkg-query -W -f ...", True)


def test_extra_command_with_wrong_line_count_is_an_error():
    guest = ScriptedGuest({"list packages": RPM_OUTPUT,
                           "ICICLE extra command": "only one\n"})
    with pytest.raises(icicle.IcicleError, match="printed 1 lines for 4 "
                       "packages"):
        icicle.read_packages(guest, "redhat", "rpm -qa --qf '%{SIZE}\\n'")


def test_unknown_family_is_an_error():
    with pytest.raises(icicle.IcicleError, match="'windows'"):
        icicle.read_packages(ScriptedGuest({}), "windows")


def test_real_dpkg_over_ssh(sshd_server, client_key):
    with ssh.SSHGuest("127.0.0.1", sshd_server.port, "root",
                      client_key, key_grace=0) as guest:
        guest.wait_until_reachable(10)
        packages = icicle.read_packages(
            guest, "debian", "dpkg-query -W -f '${Package}\\n'")
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n"],
        check=True, capture_output=True, text=True).stdout.splitlines()
    expected = sorted(line.split()[1] for line in installed
                      if line[1:2] == "i")
    assert sorted(p.extra for p in packages) == expected
    assert all(p.name.startswith(p.extra + "_") for p in packages)
    server = next(p for p in packages if p.extra == "openssh-server")
    root = etree.fromstring(icicle.icicle_xml(packages, "host").encode())
    assert root.find(f"packages/package[@name='{server.name}']") is not None

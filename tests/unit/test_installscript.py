"""Install scripts: kickstart and preseed from a TDL, operator scripts."""

import logging
import re
import subprocess

import pytest

from imgfac_nova.template import parse_template
from novaimagebuilder.scripts import installscript as isc

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests builder"


def tdl(os_name, version, install, rootpw=None):
    password = f"<rootpw>{rootpw}</rootpw>" if rootpw else ""
    return parse_template(f"""<template>
  <name>Web Server 1</name>
  <os><name>{os_name}</name><version>{version}</version><arch>x86_64</arch>
    {install}{password}
  </os>
</template>""")


FEDORA_URL = "http://mirror.example.org/fedora/releases/40/Everything/x86_64/os/"
DEBIAN_URL = ("http://mirror.example.org:8080/debian/dists/bookworm/main/"
              "installer-amd64/")


def fedora(rootpw="s3cret pw"):
    return tdl("Fedora", "40", f'<install type="url"><url>{FEDORA_URL}</url>'
               "</install>", rootpw)


def debian(rootpw="s3cret pw", url=DEBIAN_URL, name="Debian", version="12"):
    return tdl(name, version, f'<install type="url"><url>{url}</url></install>',
               rootpw)


def openssl_hash(password, salt):
    """The reference SHA-512 crypt hash, from openssl (password on stdin)."""
    return subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                          input=password + "\n", capture_output=True, text=True,
                          check=True).stdout.strip()


def hashed_password(text, prefix):
    match = re.search(re.escape(prefix) + r" (\$6\$\S+)", text)
    assert match, f"no '{prefix} $6$...' line"
    return match.group(1)


def salt_of(crypted):
    return crypted.rsplit("$", 1)[0].split("$", 2)[2]


# ---------------------------------------------------------------- passwords

@pytest.mark.parametrize("password", ["pw", "x" * 200, "pässwörd €"])
def test_password_hash_is_the_sha512_crypt_openssl_makes(password):
    hashed = isc.password_hash(password)
    assert hashed.startswith("$6$rounds=100000$")
    salt = hashed.split("$")[3]
    assert openssl_hash(password, f"rounds=100000${salt}") == hashed


def test_random_salt_and_existing_hash():
    first, second = isc.password_hash("pw"), isc.password_hash("pw")
    assert first != second
    assert first.startswith("$6$rounds=100000$")
    assert isc.password_hash(first) == first


# ---------------------------------------------------------------- kickstart

def test_kickstart_from_tdl():
    text, kind = isc.generate(fedora())
    assert kind == "kickstart"
    lines = text.splitlines()
    assert f'url --url="{FEDORA_URL}"' in lines
    assert "poweroff" in lines and "reboot" not in lines
    assert "s3cret" not in text
    crypted = hashed_password(text, "rootpw --iscrypted")
    salt = salt_of(crypted).removeprefix("rounds=100000$")
    assert crypted == openssl_hash("s3cret pw", f"rounds=100000${salt}")
    assert "ignoredisk --only-use=vda" in lines
    assert "clearpart --all --initlabel --drives=vda" in lines
    assert "network --bootproto=dhcp --activate --hostname=web-server-1" in lines
    packages = text.split("%packages\n", 1)[1].split("%end", 1)[0].split()
    assert {"openssh-server", "cloud-init", "sudo"} <= set(packages)


def test_kickstart_user_key_and_disk():
    text, _ = isc.generate(fedora(rootpw=None), {
        "default_user": "fedora", "ssh_public_key": PUBLIC_KEY,
        "install_disk": "/dev/sda"})
    lines = text.splitlines()
    assert "rootpw --lock" in lines
    assert "user --name=fedora --groups=wheel --lock" in lines
    assert f'sshkey --username=fedora "{PUBLIC_KEY}"' in lines
    assert "ignoredisk --only-use=sda" in lines
    post = text.split("%post --erroronfail\n", 1)[1].split("%end", 1)[0]
    assert "'fedora ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/90-imgfac-fedora" \
        in post


def test_kickstart_from_iso_uses_the_cdrom():
    template = tdl("RHEL-9", "9.4", '<install type="iso">'
                   "<iso>http://iso.example.org/rhel.iso</iso></install>")
    text, kind = isc.generate(template)
    assert kind == "kickstart"
    assert "cdrom" in text.splitlines()
    assert "url --url" not in text


def test_bad_parameters_are_refused():
    with pytest.raises(isc.InstallScriptError, match="default_user 'Bad User'"):
        isc.generate(fedora(), {"default_user": "Bad User"})
    with pytest.raises(isc.InstallScriptError, match="install_disk"):
        isc.generate(fedora(), {"install_disk": "vda; rm -rf /"})
    with pytest.raises(isc.InstallScriptError, match="ssh_public_key"):
        isc.generate(debian(), {"ssh_public_key": PUBLIC_KEY + ' "$(x)"'})


# ---------------------------------------------------------------- preseed

def test_preseed_from_tdl():
    text, kind = isc.generate(debian())
    assert kind == "preseed"
    lines = text.splitlines()
    for line in ["d-i mirror/protocol string http",
                 "d-i mirror/http/hostname string mirror.example.org:8080",
                 "d-i mirror/http/directory string /debian",
                 "d-i mirror/suite string bookworm",
                 "d-i passwd/root-login boolean true",
                 "d-i passwd/make-user boolean false",
                 "d-i partman-auto/disk string /dev/vda",
                 "d-i grub-installer/bootdev string /dev/vda",
                 # netcfg asks it only when DHCP offers no name server
                 "d-i netcfg/get_nameservers string",
                 "d-i debian-installer/exit/poweroff boolean true"]:
        assert line in lines
    assert "s3cret" not in text
    crypted = hashed_password(text, "d-i passwd/root-password-crypted password")
    salt = salt_of(crypted).removeprefix("rounds=100000$")
    assert crypted == openssl_hash("s3cret pw", f"rounds=100000${salt}")
    include = next(line for line in lines if line.startswith("d-i pkgsel/include"))
    assert {"openssh-server", "sudo", "cloud-init"} <= set(include.split()[3:])


def test_preseed_for_uefi_puts_grub_on_the_removable_path_too():
    removable = "d-i grub-installer/force-efi-extra-removable boolean true"
    text, _ = isc.generate(debian(), {"firmware": "uefi"})
    assert removable in text.splitlines()
    text, _ = isc.generate(debian(), {"firmware": "bios"})
    assert "force-efi-extra-removable" not in text


def test_preseed_without_root_password_makes_a_user():
    text, _ = isc.generate(debian(rootpw=None), {"ssh_public_key": PUBLIC_KEY})
    lines = text.splitlines()
    assert "d-i passwd/root-login boolean false" in lines
    assert "d-i passwd/username string debian" in lines
    late = next(line for line in lines if line.startswith(
        "d-i preseed/late_command string "))
    script = late.split(" string ", 1)[1]
    assert "/target/etc/sudoers.d/90-imgfac-debian" in script
    assert "/target/home/debian/.ssh/authorized_keys" in script


def test_preseed_late_command_really_works(tmp_path):
    text, _ = isc.generate(debian(rootpw=None),
                           {"default_user": "admin", "ssh_public_key": PUBLIC_KEY})
    late = next(line for line in text.splitlines() if line.startswith(
        "d-i preseed/late_command string ")).split(" string ", 1)[1]
    target = tmp_path / "target"
    (target / "etc" / "sudoers.d").mkdir(parents=True)
    (target / "home" / "admin").mkdir(parents=True)
    fake_in_target = tmp_path / "bin" / "in-target"
    fake_in_target.parent.mkdir()
    fake_in_target.write_text('#!/bin/sh\necho "$@" >> "$LOGFILE"\n')
    fake_in_target.chmod(0o755)
    script = late.replace("/target", str(target))
    subprocess.run(["sh", "-c", script], check=True, env={
        "PATH": f"{fake_in_target.parent}:/usr/bin:/bin",
        "LOGFILE": str(tmp_path / "in-target.log")})
    sudoers = target / "etc" / "sudoers.d" / "90-imgfac-admin"
    assert sudoers.read_text() == "admin ALL=(ALL) NOPASSWD: ALL"
    assert sudoers.stat().st_mode & 0o777 == 0o440
    keys = target / "home" / "admin" / ".ssh" / "authorized_keys"
    assert keys.read_text() == PUBLIC_KEY
    assert keys.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "in-target.log").read_text() == (
        "chown -R admin:admin /home/admin/.ssh\n")


def test_ubuntu_suite_from_version_and_https_mirror():
    # Before 20.04 Ubuntu's server installer is d-i (later: autoinstall).
    text, kind = isc.generate(debian(
        url="https://mirror.example.org/ubuntu/", name="Ubuntu",
        version="18.04"))
    assert kind == "preseed"
    lines = text.splitlines()
    assert "d-i mirror/protocol string https" in lines
    assert "d-i mirror/https/hostname string mirror.example.org" in lines
    assert "d-i mirror/https/directory string /ubuntu" in lines
    assert "d-i mirror/suite string bionic" in lines


def test_unknown_suite_is_an_error():
    with pytest.raises(isc.InstallScriptError, match="cannot tell the Debian "
                       "suite"):
        isc.generate(debian(url="http://mirror.example.org/debian/",
                            version="99"))


# ---------------------------------------------------------------- registry

def test_unknown_os_is_an_error():
    template = tdl("Windows", "2022", '<install type="iso">'
                   "<iso>http://iso.example.org/win.iso</iso></install>")
    with pytest.raises(isc.InstallScriptError, match="no install script "
                       "generator for 'Windows 2022'.*install_script "
                       "parameter"):
        isc.generate(template)


def test_registered_generator_is_used(monkeypatch):
    monkeypatch.setitem(isc.GENERATORS, ("windows", ()), lambda template,
                        params: (f"<unattend>{template.os.version}</unattend>",
                                 "autounattend"))
    template = tdl("Windows", "2022", '<install type="iso">'
                   "<iso>http://iso.example.org/win.iso</iso></install>")
    assert isc.generate(template) == ("<unattend>2022</unattend>",
                                      "autounattend")


def test_register_adds_a_generator(monkeypatch):
    monkeypatch.setattr(isc, "GENERATORS", dict(isc.GENERATORS))
    isc.register("Gentoo", lambda template, params: ("script", "custom"))
    assert isc.generate(tdl("Gentoo", "1", '<install type="iso">'
                            "<iso>http://x.example.org/g.iso</iso></install>")
                        ) == ("script", "custom")


def test_generator_by_version(monkeypatch):
    monkeypatch.setattr(isc, "GENERATORS", dict(isc.GENERATORS))
    isc.register("Gentoo", lambda template, params: ("old", "custom"))
    isc.register("Gentoo", lambda template, params: ("new", "custom"), "2.10")
    isc.register("Gentoo", lambda template, params: ("newer", "custom"), "3")

    def made(version):
        return isc.generate(tdl("Gentoo", version, '<install type="iso">'
                                "<iso>http://x.example.org/g.iso</iso>"
                                "</install>"))[0]
    assert [made(v) for v in ("1", "2.9", "2.10", "2.11", "3", "17.04")] == [
        "old", "old", "new", "new", "newer", "newer"]


def test_password_is_not_logged(caplog):
    caplog.set_level(logging.DEBUG)
    isc.generate(fedora("TopSecret"))
    isc.generate(debian("TopSecret"))
    assert "TopSecret" not in caplog.text


# ---------------------------------------------------------------- operator scripts

def test_given_kickstart_is_used_as_is():
    script = "url --url=http://x/\nrootpw --plaintext pw\npoweroff\n"
    assert isc.from_parameter(script) == (script, "kickstart")
    assert isc.from_parameter(script.encode()) == (script, "kickstart")


def test_given_test_installer_script_is_accepted():
    script = "disk /dev/vda\nrootpw --lock\npoweroff\n"
    assert isc.from_parameter(script)[1] == "kickstart"


def test_given_kickstart_that_reboots_is_refused():
    with pytest.raises(isc.InstallScriptError, match="ends with 'reboot'; it "
                       "must power off"):
        isc.from_parameter("url --url=http://x/\nreboot\n")


def test_given_preseed_must_power_off():
    generated, _ = isc.generate(debian())
    assert isc.from_parameter(generated) == (generated, "preseed")
    without = generated.replace(
        "d-i debian-installer/exit/poweroff boolean true", "")
    with pytest.raises(isc.InstallScriptError, match="does not power off"):
        isc.from_parameter(without)


@pytest.mark.parametrize("text, kind", [
    ("#cloud-config\nautoinstall:\n  version: 1\n  shutdown: poweroff\n",
     "autoinstall"),
    ('<?xml version="1.0"?><unattend xmlns="urn:x"/>', "autounattend"),
    ("#!/bin/sh\necho custom\n", None),
])
def test_given_script_kinds(text, kind):
    assert isc.from_parameter(text) == (text, kind)


@pytest.mark.parametrize("text, message", [
    ("  \n", "install_script is empty"),
    (b"\xff\xfe", "not UTF-8 text"),
    ("a\0b", "NUL bytes"),
])
def test_given_unusable_scripts(text, message):
    with pytest.raises(isc.InstallScriptError, match=message):
        isc.from_parameter(text)


# ---------------------------------------------------------------- showing

@pytest.mark.parametrize("line, kept", [
    ("rootpw --plaintext 'two words'", "rootpw --iscrypted "),
    ("rootpw pw", "rootpw --iscrypted "),
    ("sshpw --username=root pw", "sshpw --iscrypted --username=root "),
    ("user --name=a --password pw --groups=wheel",
     "user --iscrypted --name=a --password "),
])
def test_plain_kickstart_passwords_shown_as_hashes(line, kept):
    shown = isc.for_display(line + "\n", "kickstart")
    assert shown.startswith(kept) and shown.endswith("\n")
    assert "pw" not in shown.split()  # (the salt may hold the letters)
    assert "words'" not in shown and "$6$rounds=100000$" in shown


@pytest.mark.parametrize("line", ["rootpw --lock", "rootpw --iscrypted $6$x",
                                  "user --name=a --lock", "# rootpw pw"])
def test_kickstart_lines_without_plain_passwords_unchanged(line):
    assert isc.for_display(line, "kickstart") == line


def test_templates_plain_root_password_never_shown():
    text = "#!/bin/sh\necho s3cret pw | chpasswd\n"
    assert isc.for_display(text, None, fedora("s3cret pw")) == (
        "#!/bin/sh\necho *** | chpasswd\n")


# ---------------------------------------------------------------- weak hashes

@pytest.mark.parametrize("text, line", [
    ("text\nrootpw --iscrypted $1$salt$abcdefghijklmnopqrstuv\npoweroff\n", 2),
    ("poweroff\nuser --name=a --iscrypted --password=$1$s$h\n", 2),
    ("d-i passwd/root-password-crypted password $1$s$h\n"
     "d-i debian-installer/exit/poweroff boolean true\n", 1),
])
def test_given_scripts_with_md5_crypt_hashes_refused(text, line):
    with pytest.raises(isc.InstallScriptError) as exc:
        isc.from_parameter(text)
    assert str(exc.value) == (
        f"install_script:{line}: the password hash is MD5-crypt ($1$), too "
        "weak; give a SHA-512 ($6$) or yescrypt ($y$) hash")


@pytest.mark.parametrize("text, line", [
    ("poweroff\nrootpw --iscrypted abJnggxhB/yWI\n", 2),
    ("poweroff\nuser --name=administrator --iscrypted "
     "--password=abJnggxhB/yWI\n", 2),
    ("d-i passwd/user-password-crypted password abJnggxhB/yWI\n"
     "d-i debian-installer/exit/poweroff boolean true\n", 1),
])
def test_given_scripts_with_des_crypt_hashes_refused(text, line):
    with pytest.raises(isc.InstallScriptError, match=(
            rf"^install_script:{line}: the password hash is DES crypt, too "
            "weak")):
        isc.from_parameter(text)


@pytest.mark.parametrize("text", [
    "poweroff\nrootpw --plaintext abJnggxhB/yWI\n",
    "poweroff\nuser --name=administrator --iscrypted "
    "--password=$6$salt$hash\n",
])
def test_thirteen_character_plain_passwords_and_user_names_accepted(text):
    assert isc.from_parameter(text) == (text, "kickstart")


def test_given_scripts_with_strong_hashes_accepted():
    for hashed in ("$6$salt$abc", "$y$j9T$salt$abc"):
        text = f"rootpw --iscrypted {hashed}\npoweroff\n"
        assert isc.from_parameter(text) == (text, "kickstart")


# ---------------------------------------------------------------- masking

def test_masked_script_keeps_no_password_hash_or_url_credentials():
    text = "\n".join([
        "url --url=http://mirror:pw1@mirror.example/os "
        "--proxy=https://tok2@proxy.example:3128/",
        "rootpw --plaintext secret3",
        "rootpw --iscrypted abJnggxhB/yWI",
        "user --name=a --iscrypted --password=$6$s$hash4",
        "user --name=b --password plain5",
        "sshpw --username=root plain6",
        "d-i passwd/user-password password plain7",
        "d-i passwd/root-password-crypted password $y$j9T$s$hash8",
        "    password: plain9",
        "%post",
        "echo 'root:$6$s$hash10' | chpasswd -e",
        "%end",
        "poweroff", ""])
    shown = isc.masked(text)
    for secret in ("pw1", "tok2", "secret3", "abJnggxhB", "hash4", "plain5",
                   "plain6", "plain7", "hash8", "plain9", "hash10"):
        assert secret not in shown
    assert shown.splitlines()[0] == (
        "url --url=http://***@mirror.example/os "
        "--proxy=https://***@proxy.example:3128/")
    assert shown.splitlines()[3] == "user --name=a --iscrypted '--password=***'"
    assert shown.splitlines()[-2:] == ["%end", "poweroff"]


def test_masked_leaves_other_lines_alone():
    text = "text\nautopart --type=plain\npoweroff\n"
    assert isc.masked(text) == text


def test_pykickstart_warnings_are_logged_without_passwords(monkeypatch,
                                                           caplog):
    from novaimagebuilder.scripts import kickstart as ks
    monkeypatch.setattr(ks, "parse", lambda text, *args: [
        "line 2 'rootpw --plaintext hunter2' is deprecated"])
    text = "text\nrootpw --plaintext hunter2\npoweroff\n"
    with caplog.at_level(logging.WARNING):
        assert isc.from_parameter(text, fedora()) == (text, "kickstart")
    assert "install_script: line 2 'rootpw --plaintext ***' is deprecated" \
        in caplog.text
    assert "hunter2" not in caplog.text

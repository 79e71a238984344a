"""customize(): TDL customization against a recording guest and a real sshd."""

import base64
import functools
import http.server
import logging
import os
import threading
import types

import pytest

from imgfac_nova.template import parse_template
from novaimagebuilder.guest import customize as cz
from novaimagebuilder.guest import package_managers
from novaimagebuilder import errors
from novaimagebuilder.guest import ssh
from novaimagebuilder.guest import ssh_errors
from tests.unit import sshd

sshd_server = sshd.sshd_server
client_key = sshd.client_key
LOG = logging.getLogger("test.customize")


class FakeGuest:
    """Records what customize() asks of a guest; fails named commands."""

    def __init__(self, failures=None):
        self.calls = []
        self.failures = failures or {}

    def run(self, command, privileged=True, check=True, timeout=None,
            name=None, merge_stderr=True):
        self.calls.append(("run", name, command, privileged))
        status, output = self.failures.get(name, (0, ""))
        if status and check:
            raise ssh_errors.CommandFailed(name, status, output.splitlines())
        return status, output

    def put(self, data, path, mode=0o644, privileged=True):
        self.calls.append(("put", path, data, mode, privileged))

    def names(self):
        """Run names and put paths, in order."""
        return [call[1] for call in self.calls]

    def put_data(self, path):
        return next(c[2] for c in self.calls if c[0] == "put" and c[1] == path)

    def command(self, name):
        return next(c[2] for c in self.calls if c[0] == "run" and c[1] == name)


def tdl(os_name="Fedora", body=""):
    return parse_template(f"""<template>
  <name>test</name>
  <os><name>{os_name}</name><version>40</version><arch>x86_64</arch>
    <install type="url"><url>http://mirror.example.org/os/</url></install>
  </os>
  {body}
</template>""")


FULL = """
  <repositories>
    <repository name="extra">
      <url>https://repo.example.org/extra/</url>
      <signed>yes</signed><persisted>no</persisted><sslverify>yes</sslverify>
      <cacert>CA-PEM</cacert><clientcert>CERT-PEM</clientcert>
      <clientkey>KEY-PEM</clientkey>
    </repository>
    <repository name="kept">
      <url>http://repo.example.org/kept/</url>
    </repository>
  </repositories>
  <packages>
    <package name="httpd"/>
    <package name="vim-enhanced"/>
    <package name="local-tool"><arguments>--nogpgcheck</arguments></package>
  </packages>
  <files>
    <file name="/etc/motd">Hello</file>
    <file name="/etc/encoded" type="base64">aGVsbG8K</file>
    <file name="/etc/fetched" type="url">http://files.example.org/fetched</file>
  </files>
  <precommands>
    <command name="pre-one">echo pre</command>
  </precommands>
  <commands>
    <command name="third" position="3">echo third</command>
    <command name="first" position="1">echo first</command>
    <command name="second" position="2" type="base64">ZWNobyBzZWNvbmQK</command>
  </commands>
"""


# ---------------------------------------------------------------- OS families

@pytest.mark.parametrize("name, family", [
    ("Fedora", "redhat"), ("RHEL-9", "redhat"), ("CentOS-Stream", "redhat"),
    ("Rocky", "redhat"), ("AlmaLinux", "redhat"), ("OL-8", "redhat"),
    ("Debian", "debian"), ("ubuntu", "debian"), ("openSUSE-Leap", "suse"),
])
def test_os_family(name, family):
    assert package_managers.os_family(name) == family


def test_unknown_os_fails_before_touching_the_guest():
    guest = FakeGuest()
    with pytest.raises(package_managers.UnsupportedOS, match="unknown operating system "
                       "'Windows'"):
        cz.customize(guest, tdl("Windows", FULL), LOG)
    assert guest.calls == []


# ---------------------------------------------------------------- order

def test_steps_run_in_image_factory_order():
    guest, activities = FakeGuest(), []
    cz.customize(guest, tdl("Fedora", FULL), LOG, progress=activities.append)
    assert guest.names() == [
        "/etc/yum.repos.d/extra.repo",
        "/etc/pki/imgfac-nova/extra/ca.pem",
        "/etc/pki/imgfac-nova/extra/client.pem",
        "/etc/pki/imgfac-nova/extra/client.key",
        "/etc/yum.repos.d/kept.repo",
        "pre-one",
        "install packages",
        "install package local-tool",
        "/etc/motd",
        "/etc/encoded",
        "download /etc/fetched",
        "first", "second", "third",
        "remove repositories",
        "refresh package index",
    ]
    assert all(call[-1] is True for call in guest.calls)    # all privileged
    assert activities == [
        "Adding repository 'extra'", "Adding repository 'kept'",
        "Running precommand 'pre-one'", "Installing 3 packages",
        "Writing file /etc/motd", "Writing file /etc/encoded",
        "Writing file /etc/fetched", "Running command 'first'",
        "Running command 'second'", "Running command 'third'",
        "Removing repositories not persisted: 'extra'"]


def test_commands_follow_positions_not_document_order():
    command = functools.partial(types.SimpleNamespace, type="raw")
    template = types.SimpleNamespace(
        os=types.SimpleNamespace(name="Debian"), repositories=[], packages=[],
        files=[], precommands=[],
        commands=[command(name="b", content="echo b", position=2),
                  command(name="c", content="echo c", position=3),
                  command(name="a", content="echo a", position=1)])
    for item in template.commands:
        item.data = item.content.encode()
    guest = FakeGuest()
    cz.customize(guest, template, LOG)
    assert guest.names() == ["a", "b", "c"]
    assert guest.command("b") == "echo b"


def test_nothing_to_do_runs_nothing():
    guest = FakeGuest()
    cz.customize(guest, tdl("Debian"), LOG)
    assert guest.calls == []


# ---------------------------------------------------------------- dnf / yum

def test_yum_repository_files():
    guest = FakeGuest()
    cz.customize(guest, tdl("Fedora", FULL), LOG)
    extra = guest.put_data("/etc/yum.repos.d/extra.repo").decode()
    assert extra == (
        "[extra]\nname=extra\nbaseurl=https://repo.example.org/extra/\n"
        "enabled=1\ngpgcheck=1\nsslverify=1\n"
        "sslcacert=/etc/pki/imgfac-nova/extra/ca.pem\n"
        "sslclientcert=/etc/pki/imgfac-nova/extra/client.pem\n"
        "sslclientkey=/etc/pki/imgfac-nova/extra/client.key\n")
    kept = guest.put_data("/etc/yum.repos.d/kept.repo").decode()
    assert "gpgcheck=0\n" in kept and "sslverify=0\n" in kept
    key = next(c for c in guest.calls if c[1].endswith("client.key"))
    assert key[2] == b"KEY-PEM\n" and key[3] == 0o600


def test_dnf_install_and_cleanup_commands():
    guest = FakeGuest()
    cz.customize(guest, tdl("RHEL-9", FULL), LOG)
    install = guest.command("install packages")
    assert "command -v dnf" in install and "echo yum" in install
    assert install.endswith("-y install httpd vim-enhanced")
    assert guest.command("install package local-tool").endswith(
        "-y install --nogpgcheck local-tool")
    assert guest.command("remove repositories") == (
        "rm -rf /etc/yum.repos.d/extra.repo /etc/pki/imgfac-nova/extra/ca.pem"
        " /etc/pki/imgfac-nova/extra/client.pem"
        " /etc/pki/imgfac-nova/extra/client.key /etc/pki/imgfac-nova/extra")
    assert guest.command("refresh package index").endswith(" clean all")


# ---------------------------------------------------------------- apt

APT_REPOS = """
  <repositories>
    <repository name="backports">
      <url>deb http://deb.example.org/debian bookworm-backports main</url>
      <signed>yes</signed><persisted>no</persisted>
    </repository>
    <repository name="local repo">
      <url>http://10.0.2.2:8090/repo/</url>
    </repository>
    <repository name="options">
      <url>deb [arch=amd64] https://secure.example.org/apt stable main</url>
    </repository>
  </repositories>
  <packages><package name="nginx"/><package name="curl"/></packages>
"""


def test_apt_source_lines():
    guest = FakeGuest()
    cz.customize(guest, tdl("Debian", APT_REPOS), LOG)
    assert guest.put_data("/etc/apt/sources.list.d/backports.list") == (
        b"deb http://deb.example.org/debian bookworm-backports main\n")
    assert guest.put_data("/etc/apt/sources.list.d/local-repo.list") == (
        b"deb [trusted=yes] http://10.0.2.2:8090/repo/ ./\n")
    assert guest.put_data("/etc/apt/sources.list.d/options.list") == (
        b"deb [arch=amd64 trusted=yes] https://secure.example.org/apt "
        b"stable main\n")


def test_apt_https_without_sslverify_gets_host_options():
    guest = FakeGuest()
    cz.customize(guest, tdl("Debian", APT_REPOS), LOG)
    assert guest.put_data("/etc/apt/apt.conf.d/90imgfac-nova-options") == (
        b'Acquire::https::secure.example.org::Verify-Peer "false";\n'
        b'Acquire::https::secure.example.org::Verify-Host "false";\n')
    assert not any("90imgfac-nova-backports" in name
                   for name in guest.names())


def test_apt_updates_then_installs_noninteractively():
    guest = FakeGuest()
    cz.customize(guest, tdl("Ubuntu", APT_REPOS), LOG)
    names = guest.names()
    assert names.index("update package index") < names.index("install packages")
    install = guest.command("install packages")
    assert install.startswith("export DEBIAN_FRONTEND=noninteractive; ")
    assert "apt-get install -y " in install
    assert install.endswith(" nginx curl")
    assert guest.command("update package index").endswith("apt-get update")
    assert guest.command("remove repositories") == (
        "rm -rf /etc/apt/sources.list.d/backports.list")
    assert guest.command("refresh package index").endswith("apt-get update")


def test_zypper_repository_and_install():
    guest = FakeGuest()
    cz.customize(guest, tdl("openSUSE-Leap", APT_REPOS.replace(
        "deb [arch=amd64] https://secure.example.org/apt stable main",
        "https://secure.example.org/zypp/")), LOG)
    assert guest.put_data("/etc/zypp/repos.d/options.repo").decode() == (
        "[options]\nname=options\nbaseurl=https://secure.example.org/zypp/"
        "?ssl_verify=no\nenabled=1\nautorefresh=1\ngpgcheck=0\n")
    assert guest.command("install packages").startswith(
        "zypper --non-interactive install")


# ---------------------------------------------------------------- content

def test_files_and_commands_content():
    guest = FakeGuest()
    cz.customize(guest, tdl("Fedora", FULL), LOG)
    assert guest.put_data("/etc/motd") == b"Hello"
    assert guest.put_data("/etc/encoded") == b"hello\n"
    assert "curl -fsSL" in guest.command("download /etc/fetched")
    assert "http://files.example.org/fetched" in guest.command(
        "download /etc/fetched")
    assert guest.command("second") == "echo second\n"


def test_script_with_shebang_is_uploaded_and_executed():
    script = "#!/usr/bin/python3\nprint('hi')\n"
    body = (f'<commands><command name="py" type="base64">'
            f'{base64.b64encode(script.encode()).decode()}</command></commands>')
    guest = FakeGuest()
    cz.customize(guest, tdl("Fedora", body), LOG)
    upload = guest.calls[0]
    assert upload[0] == "put" and upload[2] == script.encode()
    assert upload[3] == 0o700
    assert guest.command("py").startswith(upload[1] + "; status=$?")


# ---------------------------------------------------------------- failures

def test_failing_command_stops_the_customization():
    guest = FakeGuest(failures={"second": (2, "x\nsomething broke\n")})
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        cz.customize(guest, tdl("Fedora", FULL), LOG)
    assert str(failure.value) == ("command 'second' exited with status 2: "
                                  "something broke")
    assert guest.names()[-1] == "second"


def test_missing_package_error_is_apts_line():
    output = ("Reading package lists...\nBuilding dependency tree...\n"
              "E: Unable to locate package nosuchpkg\n")
    guest = FakeGuest(failures={"install packages": (100, output)})
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        cz.customize(guest, tdl("Debian", "<packages><package name='nosuchpkg'"
                                "/></packages>"), LOG)
    assert str(failure.value) == ("command 'install packages' exited with "
                                  "status 100: E: Unable to locate package "
                                  "nosuchpkg")


def test_cancel_between_steps():
    guest, asked = FakeGuest(), []

    def cancelled():
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(errors.Cancelled):
        cz.customize(guest, tdl("Fedora", FULL), LOG, cancelled=cancelled)
    assert guest.names()[-1] == "pre-one"


# ---------------------------------------------------------------- real sshd

FAKE_APT = """#!/bin/sh
echo "apt-get $*" >> "$(dirname "$0")/../apt.log"
case " $* " in
  *" nosuchpkg "*) echo "Reading package lists..."
                   echo "E: Unable to locate package nosuchpkg" >&2; exit 100 ;;
esac
echo "Setting up $(echo "$*" | awk '{print $NF}') ..."
"""


@pytest.fixture
def real_guest(sshd_server, client_key, tmp_path):
    """The real sshd, with a fake apt-get first on the privileged PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                           command_prefix=f"env PATH={bin_dir}:/usr/sbin:"
                           "/usr/bin:/sbin:/bin", log=LOG, key_grace=0)
    with session.wait_until_reachable(10):
        yield session


@pytest.fixture
def web_root(tmp_path):
    """A static web server on 127.0.0.1 serving a directory."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_customize_over_real_ssh(real_guest, tmp_path, web_root):
    www, base_url = web_root
    (www / "payload.txt").write_text("downloaded\n")
    order, out = tmp_path / "order", tmp_path / "guest"
    (www / "script.sh").write_text(f"echo from-url >> {order}\n")
    template = tdl("Debian", f"""
  <packages><package name="nginx"/></packages>
  <files>
    <file name="{out}/etc/motd">Welcome</file>
    <file name="{out}/etc/data.bin" type="base64">AAEC/w==</file>
    <file name="{out}/opt/payload.txt" type="url">{base_url}/payload.txt</file>
  </files>
  <precommands>
    <command name="prepare">mkdir -p {out} &amp;&amp; echo pre >> {order}</command>
  </precommands>
  <commands>
    <command name="second" position="2" type="url">{base_url}/script.sh</command>
    <command name="first" position="1">(cat {out}/etc/motd; echo) >> {order}</command>
    <command name="third" position="3">echo uid=$(id -u) >> {order}</command>
  </commands>""")
    activities = []
    cz.customize(real_guest, template, LOG, progress=activities.append)
    assert (out / "etc" / "motd").read_text() == "Welcome"
    assert (out / "etc" / "data.bin").read_bytes() == b"\x00\x01\x02\xff"
    assert (out / "opt" / "payload.txt").read_text() == "downloaded\n"
    assert ((out / "opt" / "payload.txt").stat().st_mode & 0o777) == 0o644
    assert order.read_text() == "pre\nWelcome\nfrom-url\nuid=0\n"
    apt_log = (tmp_path / "apt.log").read_text().splitlines()
    assert apt_log[0] == "apt-get update"
    assert apt_log[1].startswith("apt-get install -y ")
    assert apt_log[1].endswith(" nginx")
    assert "Installing 1 package" in activities
    assert not [n for n in os.listdir(tmp_path / "guest" / "opt")
                if n.endswith(".imgfac-part")]


def test_missing_package_over_real_ssh(real_guest):
    template = tdl("Debian", "<packages><package name='nosuchpkg'/></packages>")
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        cz.customize(real_guest, template, LOG)
    assert str(failure.value) == ("command 'install packages' exited with "
                                  "status 100: E: Unable to locate package "
                                  "nosuchpkg")


def test_failed_download_over_real_ssh(real_guest, tmp_path, web_root):
    _, base_url = web_root
    target = tmp_path / "missing.txt"
    template = tdl("Fedora", f"""<files>
    <file name="{target}" type="url">{base_url}/nothing-here</file></files>""")
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        cz.customize(real_guest, template, LOG)
    assert str(failure.value).startswith(f"command 'download {target}' "
                                         "exited with status 22: curl: (22)")
    assert not target.exists()
    assert not list(tmp_path.glob("*.imgfac-part"))


def test_bad_package_arguments_fail_before_touching_the_guest():
    guest = FakeGuest()
    body = ("<packages><package name='x'><arguments>--opt 'unbalanced"
            "</arguments></package></packages>")
    with pytest.raises(errors.BuildError, match="arguments of package 'x' "
                       "are not valid shell words"):
        cz.customize(guest, tdl("Fedora", body), LOG)
    assert guest.calls == []

"""The test cloud's guests, run under real QEMU (TCG) without the cloud.

Builds (or reuses) the artifacts of tools/testcloud/guests.py in the test
cloud's state directory, then boots them the way the test cloud's Nova
driver does: the guest disk with a config drive, reached over SSH
(paramiko); the test installer from its kernel/initrd and from its ISO with
an install script on the config drive or named on the kernel command line.
Needs root, qemu-system-x86_64, genisoimage, socat and debootstrap.
"""
import hashlib
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import paramiko
import pytest

from tests.poll import ssh_login, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "testcloud_guests", ROOT / "tools" / "testcloud" / "guests.py")
guests = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(guests)

STATE_DIR = pathlib.Path(guests.state_dir_default())
WEB_PORT = 8090


@pytest.fixture(scope="module")
def built():
    return {k: pathlib.Path(v) for k, v in guests.build(STATE_DIR).items()}


@pytest.fixture(scope="module")
def web(built):
    """http://127.0.0.1:8090/ serving the state directory's www/."""
    url = f"http://127.0.0.1:{WEB_PORT}/repo/Packages"
    expected = (built["repo"] / "Packages").read_bytes()
    server = None
    try:
        served = urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        server = subprocess.Popen(
            ["python3", "-m", "http.server", "--bind", "127.0.0.1",
             "--directory", str(STATE_DIR / "www"), str(WEB_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        served = wait_for(lambda: _get(url), 20, "the web server")
    assert served == expected, (
        f"port {WEB_PORT} serves another repository than {built['repo']}")
    yield
    if server:
        server.terminate()
        server.wait()


def _get(url):
    try:
        return urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_drive(tmp_path, meta=None, user_data=None, files=None):
    """An ISO 9660 config drive (label config-2) in the OpenStack layout."""
    tree = tmp_path / "config-drive"
    latest = tree / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(
        {"uuid": "00000000-0000-4000-8000-" + os.urandom(6).hex(),
         **(meta or {})}))
    if user_data is not None:
        (latest / "user_data").write_text(user_data)
    for path, text in (files or {}).items():
        (tree / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tree / path.lstrip("/")).write_text(text)
    iso = tmp_path / "config-drive.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), "-V", "config-2",
                    "-J", "-R", str(tree)], check=True)
    return iso


class Machine:
    """One QEMU guest and its serial console log."""

    def __init__(self, tmp_path, name, **qemu):
        self.console = tmp_path / f"{name}.console.log"
        self.ssh_port = _free_port() if qemu.pop("network", False) else None
        argv = guests.qemu_command(
            self.console, ssh_forward=("127.0.0.1", self.ssh_port)
            if self.ssh_port else None, **qemu)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def text(self):
        return (self.console.read_text(errors="replace")
                if self.console.exists() else "")

    def wait_console(self, needle, timeout):
        wait_for(lambda: needle in self.text() or self.proc.poll() is not None,
                 timeout, f"'{needle}' on the console")
        assert needle in self.text(), self.tail()

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"QEMU still running after {timeout} s\n{self.tail()}") from None

    def tail(self, lines=25):
        return "console tail:\n" + "\n".join(self.text().splitlines()[-lines:])

    def ssh(self, user, key, timeout=150):
        def alive():
            assert self.proc.poll() is None, self.tail()
        return ssh_login("127.0.0.1", self.ssh_port, user, key, timeout, alive)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def machines():
    started = []
    yield lambda *a, **kw: started.append(Machine(*a, **kw)) or started[-1]
    for m in started:
        m.kill()


def run(client, command, timeout=120):
    _, out, err = client.exec_command(command, timeout=timeout)
    status = out.channel.recv_exit_status()
    text = out.read().decode()
    assert status == 0, f"{command!r} exited {status}: {err.read().decode()}"
    return text


def overlay(base, tmp_path, name, size=None):
    disk = tmp_path / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
                    "-F", "qcow2", str(disk), *([size] if size else [])],
                   check=True)
    return disk


def blank_disk(tmp_path, name, size="3G"):
    disk = tmp_path / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk),
                    size], check=True)
    return disk


def public_key(key):
    return f"{key.get_name()} {key.get_base64()} test@imgfac"


def fingerprint(key):
    import base64
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_build_is_cached(built):
    before = built["guest_disk"].stat().st_mtime
    started = time.monotonic()
    again = guests.build(STATE_DIR)
    assert time.monotonic() - started < 5
    assert pathlib.Path(again["guest_disk"]).stat().st_mtime == before


def test_repo_index_matches_packages(built):
    index = (built["repo"] / "Packages").read_text()
    stanzas = [dict(line.split(": ", 1) for line in s.splitlines()
                    if ": " in line and not line.startswith(" "))
               for s in index.strip().split("\n\n")]
    assert sorted(s["Package"] for s in stanzas) == sorted(guests.REPO_PACKAGES)
    for s in stanzas:
        data = (built["repo"] / s["Filename"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["SHA256"]


@pytest.mark.slow  # every product build's customization covers it
def test_guest_boots_to_ssh_installs_from_repo_and_powers_off(
        built, web, tmp_path, machines):
    key = paramiko.ECDSAKey.generate()
    drive = config_drive(tmp_path, meta={
        "hostname": "guest-one.novalocal", "name": "guest-one",
        "public_keys": {"test": public_key(key) + "\n"}},
        user_data="#!/bin/sh\necho \"user data ran as $(id -un)\" > /var/lib/ud\n")
    # A bigger disk than the image, as Nova gives for the flavor.
    vm = machines(tmp_path, "guest", disk=overlay(built["guest_disk"],
                                                  tmp_path, "guest", "4G"),
                  config_drive=drive, network=True)
    client = vm.ssh("debian", key)
    print(f"guest boot to SSH: {time.monotonic() - vm.started:.1f} s")

    host_key = fingerprint(client.get_transport().get_remote_server_key())
    console = vm.text()
    block = console.split("-----BEGIN SSH HOST KEY FINGERPRINTS-----")[1]
    assert host_key in block.split("-----END SSH HOST KEY FINGERPRINTS-----")[0]
    assert run(client, "hostname").strip() == "guest-one"
    assert run(client, "sudo -n id -u").strip() == "0"
    assert run(client, "cat /var/lib/ud").strip() == "user data ran as root"
    root_kib = int(run(client, "df -k --output=size / | tail -n 1"))
    assert root_kib > 3.5 * 1024 ** 2, "the root file system did not grow"
    assert "openssh-server" in run(client, "dpkg-query -W -f '${Package}\\n'")
    run(client, "echo 'deb [trusted=yes] http://10.0.2.2:8090/repo/ ./' "
                "| sudo tee /etc/apt/sources.list.d/local.list")
    run(client, "sudo apt-get update -q && sudo apt-get install -y -q hello")
    assert run(client, "hello").strip() == "Hello, world!"

    client.exec_command("sudo poweroff")
    assert vm.wait_exit(90) == 0
    client.close()


def test_guest_without_config_drive_powers_off_on_acpi_button(
        built, tmp_path, machines):
    qmp = tmp_path / "qmp.sock"
    vm = machines(tmp_path, "plain", disk=overlay(built["guest_disk"],
                                                  tmp_path, "plain"), qmp=qmp)
    vm.wait_console("-----END SSH HOST KEY KEYS-----", 150)
    assert "ssh-ed25519 " in vm.text()
    vm.wait_console("Starting OpenBSD Secure Shell server", 60)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(qmp))
        stream = sock.makefile("rw")
        stream.readline()
        for command in ("qmp_capabilities", "system_powerdown"):
            stream.write(json.dumps({"execute": command}) + "\n")
            stream.flush()
            reply = json.loads(stream.readline())
            while "event" in reply:
                reply = json.loads(stream.readline())
            assert "return" in reply, reply
        # The Nova driver's stop: ACPI power button, acpid runs poweroff.
        assert vm.wait_exit(90) == 0
    assert "Power down" in vm.text()


INSTALL_SCRIPT = """\
# test install script
disk /dev/vda
rootpw --plaintext {password}
user tester
sshkey tester {key}
hostname installed-one
%post
echo "post ran" > /etc/imgfac-post-marker
%end
poweroff
"""


@pytest.mark.slow  # a whole install; product builds cover it too
def test_installer_installs_from_config_drive_then_boots(
        built, tmp_path, machines):
    key = paramiko.ECDSAKey.generate()
    password = "pw-" + os.urandom(6).hex()
    disk = blank_disk(tmp_path, "target")
    drive = config_drive(tmp_path, user_data=INSTALL_SCRIPT.format(
        password=password, key=public_key(key)))
    # The kernel arguments imgfac-nova gives a kickstart installer.
    installer = machines(
        tmp_path, "installer", disk=disk, config_drive=drive,
        kernel=built["installer_kernel"], initrd=built["installer_initrd"],
        append="console=ttyS0 "
               "inst.ks=hd:LABEL=config-2:/openstack/latest/user_data")
    assert installer.wait_exit(240) == 0
    console = installer.text()
    print(f"install (URL type, TCG): {time.monotonic() - installer.started:.1f} s")
    assert "INSTALLATION COMPLETE" in console, installer.tail()
    assert ("install script: hd:LABEL=config-2:/openstack/latest/user_data"
            in console)
    assert password not in console

    drive2 = config_drive(tmp_path / "second", meta={
        "public_keys": {"test": public_key(key)}})
    vm = machines(tmp_path, "installed", disk=disk, config_drive=drive2,
                  network=True)
    client = vm.ssh("tester", key)
    assert run(client, "cat /etc/imgfac-post-marker").strip() == "post ran"
    assert run(client, "hostname").strip() == "installed-one"
    shadow = run(client, "sudo -n getent shadow root").split(":")[1]
    assert shadow.startswith("$")
    client.close()
    debian = vm.ssh("debian", key)
    assert run(debian, "sudo -n id -un").strip() == "root"
    debian.exec_command("sudo poweroff")
    assert vm.wait_exit(90) == 0


@pytest.mark.parametrize("script, expected", [
    ("disk /dev/vda\nfrobnicate now\n",
     "INSTALLATION FAILED: install script line 2: unknown command 'frobnicate'"),
    # two more ways to fail, the same path: slow tier (a boot each)
    pytest.param("rootpw --plaintext\n", "INSTALLATION FAILED: install "
                 "script line 1: usage: rootpw --plaintext",
                 marks=pytest.mark.slow),
    pytest.param("fail disk on fire\n", "INSTALLATION FAILED: disk on fire",
                 marks=pytest.mark.slow),
    ("hang\n", "hanging (requested by the install script)"),
])
def test_installer_bad_script_stays_up_with_error_on_console(
        built, tmp_path, machines, script, expected):
    # The script is named on the kernel command line (cdrom:/PATH looks on
    # every CD-ROM and config drive).
    drive = config_drive(tmp_path, files={"/ks/test.ks": script})
    vm = machines(tmp_path, "installer", disk=blank_disk(tmp_path, "target"),
                  config_drive=drive, kernel=built["installer_kernel"],
                  initrd=built["installer_initrd"],
                  append="console=ttyS0 imgfac.ks=cdrom:/ks/test.ks")
    vm.wait_console(expected, 120)
    time.sleep(5)
    assert vm.proc.poll() is None, "the installer powered off after an error"
    assert "INSTALLATION COMPLETE" not in vm.text()


def test_installer_fetches_script_over_http(built, web, tmp_path, machines):
    # The repository index is no install script: the error about its first
    # line shows that the installer fetched it over the network.
    url = "http://10.0.2.2:8090/repo/Packages"
    vm = machines(tmp_path, "installer", disk=blank_disk(tmp_path, "target"),
                  kernel=built["installer_kernel"],
                  initrd=built["installer_initrd"], network=True,
                  append=f"console=ttyS0 imgfac.ks={url}")
    vm.wait_console("INSTALLATION FAILED: install script line 1: unknown "
                    "command 'Package:'", 120)
    time.sleep(3)
    assert vm.proc.poll() is None, "the installer powered off after an error"


PRESEED = """\
# like the preseed imgfac-nova generates for Debian
d-i netcfg/get_hostname string preseeded
d-i mirror/http/hostname string 127.0.0.1:8090
d-i passwd/root-login boolean true
d-i passwd/root-password-crypted password $6$salt$notarealhash
d-i passwd/make-user boolean true
d-i passwd/username string debian
d-i partman-auto/disk string /dev/vda
tasksel tasksel/first multiselect standard, ssh-server
d-i preseed/late_command string echo "late $(cat /target/etc/hostname)"; \\
    in-target test -d /home/debian && echo "late: home in target"
d-i debian-installer/exit/poweroff boolean true
"""


@pytest.mark.slow  # a whole install; the Nova sweep test's build covers it
def test_installer_translates_a_preseed(built, tmp_path, machines):
    drive = config_drive(tmp_path, user_data=PRESEED)
    # The kernel arguments imgfac-nova gives a preseed installer.
    vm = machines(tmp_path, "installer", disk=blank_disk(tmp_path, "target"),
                  config_drive=drive, kernel=built["installer_kernel"],
                  initrd=built["installer_initrd"],
                  append="console=ttyS0 auto=true priority=critical "
                         "preseed/file=/cdrom/openstack/latest/user_data")
    assert vm.wait_exit(240) == 0
    console = vm.text()
    assert "install script is a preseed" in console
    assert "root password: crypted" in console
    assert "user debian (passwordless sudo)" in console
    assert "late preseeded" in console
    assert "late: home in target" in console
    assert "INSTALLATION COMPLETE" in console, vm.tail()


@pytest.mark.slow  # a whole install; product builds cover it too
def test_installer_iso_installs_and_powers_off(built, tmp_path, machines):
    disk = blank_disk(tmp_path, "target")
    drive = config_drive(tmp_path, user_data="rootpw --lock\npoweroff\n")
    vm = machines(tmp_path, "iso", disk=disk, config_drive=drive,
                  cdroms=[built["installer_iso"]])
    assert vm.wait_exit(240) == 0
    print(f"install (ISO type, TCG): {time.monotonic() - vm.started:.1f} s")
    console = vm.text()
    assert "SYSLINUX" in console or "ISOLINUX" in console
    assert "target disk /dev/vda" in console
    assert "INSTALLATION COMPLETE" in console, vm.tail()
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", str(disk)], check=True,
        capture_output=True, text=True).stdout)
    assert info["actual-size"] > 100 * 1024 ** 2

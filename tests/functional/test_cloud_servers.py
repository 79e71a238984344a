"""Servers of the test cloud are real QEMU guests (the qemutest driver).

These tests boot the `debian-guest` image and the test installer through
the real Nova/Glance/Neutron of tools/test-cloud, reach the guests over SSH
(paramiko) on their loopback fixed IPs, and check what the driver promises:
config drive, console output, guest-initiated power off, snapshots that
keep the guest's data, direct kernel boot, clean deletion (ISO boot and rescue:
test_iso_installs.py).
"""
import base64
import configparser
import io
import os
import socket
import time
import uuid

import paramiko
import pytest

from tests.poll import ssh_login

GUEST_IMAGE = "debian-guest"
GUEST_USER = "debian"
FLAVOR = "1"
NETWORK = "imgfac-net"
BOOT_TIMEOUT = 300      # boot to SSH under TCG, with margin for a busy host
INSTALL_TIMEOUT = 600
SHUTOFF_TIMEOUT = 60    # guest power off + Nova noticing it


def fixed_ip(server):
    return next(a["addr"] for addrs in server.addresses.values()
                for a in addrs if a.get("version") == 4)


def ssh_connect(address, key, timeout=BOOT_TIMEOUT):
    """paramiko client logged in as the guest's default user."""
    return ssh_login(address, 22, GUEST_USER, key, timeout)


def run(client, command):
    """(exit status, stdout) of a command over SSH."""
    _, stdout, stderr = client.exec_command(command, timeout=120)
    out = stdout.read().decode()
    status = stdout.channel.recv_exit_status()
    return status, out + stderr.read().decode()


def instances_path(test_cloud):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(os.path.join(test_cloud.state_dir, "etc", "nova",
                             "nova.conf"))
    return parser.get("DEFAULT", "instances_path")


def qemu_pids(uuid):
    """PIDs of processes whose command line names the server's UUID."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if uuid.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def console(conn, server):
    return conn.compute.get_server_console_output(server)["output"]


def boot(conn, cleanup, name, image, **kwargs):
    network = conn.network.find_network(NETWORK, ignore_missing=False)
    server = conn.compute.create_server(
        name=name, image_id=image.id,
        flavor_id=conn.compute.find_flavor(FLAVOR, ignore_missing=False).id,
        networks=[{"uuid": network.id}], **kwargs)
    cleanup.append(lambda: conn.compute.delete_server(server))
    return wait_status(conn, server, "ACTIVE", 120)


def wait_status(conn, server, status, timeout):
    """The server once it has ``status``, waited for from a fresh GET.

    openstacksdk's waiter returns at once when the object it is given has
    the status already, so a stale ACTIVE after a reboot request would
    pass while the old guest still runs; Nova's API sets the task state
    (status HARD_REBOOT, powering-off, ...) before it answers, so a GET
    made after the request shows the transition.
    """
    return conn.compute.wait_for_server(conn.compute.get_server(server.id),
                                        status=status, wait=timeout,
                                        interval=1)


def wait_shutoff(conn, server, timeout=SHUTOFF_TIMEOUT):
    return wait_status(conn, server, "SHUTOFF", timeout)


@pytest.fixture(scope="module")
def guest_key():
    return paramiko.RSAKey.generate(2048)


@pytest.fixture
def keypair(conn, cleanup, unique_name, guest_key):
    pair = conn.compute.create_keypair(
        name=unique_name,
        public_key="%s %s" % (guest_key.get_name(), guest_key.get_base64()))
    cleanup.append(lambda: conn.compute.delete_keypair(pair))
    return pair


@pytest.fixture
def guest_image(conn):
    return conn.image.find_image(GUEST_IMAGE, ignore_missing=False)


def test_debian_guest_full_lifecycle(conn, test_cloud, cleanup, unique_name,
                                     keypair, guest_key, guest_image):
    """Boot with key + config drive, SSH, snapshot with data, power off
    from inside, boot the snapshot, delete without leftovers."""
    started = time.monotonic()
    server = boot(conn, cleanup, unique_name, guest_image,
                  key_name=keypair.name, config_drive=True)
    address = fixed_ip(server)
    client = ssh_connect(address, guest_key)
    print("boot -> SSH: %.1f s" % (time.monotonic() - started))
    with client:
        status, out = run(client, "hostname; sudo -n id -u")
        assert status == 0, out
        assert out.split() == [unique_name, "0"]
        status, out = run(client, "echo kept-by-snapshot > ~/marker; sync")
        assert status == 0, out

    assert "BEGIN SSH HOST KEY FINGERPRINTS" in console(conn, server)

    started = time.monotonic()
    snapshot = conn.compute.create_server_image(server, unique_name + "-snap",
                                                wait=True, timeout=300)
    cleanup.append(lambda: conn.image.delete_image(snapshot))
    snapshot = conn.image.get_image(snapshot)
    print("snapshot (running guest) -> active: %.1f s"
          % (time.monotonic() - started))
    assert snapshot.status == "active"
    assert snapshot.disk_format == "qcow2"

    with ssh_connect(address, guest_key) as client:
        client.exec_command("sudo -n poweroff")
    started = time.monotonic()
    wait_shutoff(conn, server)
    print("guest poweroff -> SHUTOFF: %.1f s" % (time.monotonic() - started))
    assert qemu_pids(server.id) == []

    copy = boot(conn, cleanup, unique_name + "-copy", snapshot,
                key_name=keypair.name, config_drive=True)
    with ssh_connect(fixed_ip(copy), guest_key) as client:
        status, out = run(client, "cat ~/marker")
    assert (status, out.strip()) == (0, "kept-by-snapshot")

    for each in (copy, server):
        directory = os.path.join(instances_path(test_cloud), each.id)
        assert os.path.isdir(directory)
        conn.compute.delete_server(each)
        conn.compute.wait_for_delete(each, wait=120)
        assert qemu_pids(each.id) == []
        assert not os.path.exists(directory)


@pytest.fixture(scope="module")
def running_guest(conn, guest_key):
    """One booted guest for the tests that each leave it ACTIVE (a boot
    under TCG is half a minute): ``(server, address)``."""
    name = "imgfac-ft-" + uuid.uuid4().hex[:8]
    undo = []
    try:
        pair = conn.compute.create_keypair(name=name, public_key="%s %s" % (
            guest_key.get_name(), guest_key.get_base64()))
        undo.append(lambda: conn.compute.delete_keypair(pair))
        server = boot(conn, undo, name, conn.image.find_image(
            GUEST_IMAGE, ignore_missing=False), key_name=pair.name,
            config_drive=True)
        address = fixed_ip(server)
        ssh_connect(address, guest_key).close()
        yield server, address
    finally:
        for each in reversed(undo):
            each()


def test_guest_reaches_only_the_forwarded_host_services(running_guest,
                                                        guest_key):
    """10.0.2.2:8090 is the host's web server; nothing else gets out."""
    _, address = running_guest
    probe = ("timeout 10 bash -c 'exec 3<>/dev/tcp/%s/%d && "
             "printf \"GET /repo/Packages HTTP/1.0\\r\\n\\r\\n\" >&3 && "
             "cat <&3'")
    with ssh_connect(address, guest_key) as client:
        status, out = run(client, probe % ("10.0.2.2", 8090))
        assert status == 0, out
        assert "200" in out.splitlines()[0]
        assert "Package: hello" in out
        # keystone listens on the host's loopback too, but is not forwarded
        status, _ = run(client, probe % ("10.0.2.2", 5000))
        assert status != 0


def test_console_output_and_reboot(conn, running_guest, guest_key):
    server, address = running_guest
    with ssh_connect(address, guest_key) as client:
        status, boot_id = run(client, "cat /proc/sys/kernel/random/boot_id")
    assert status == 0
    assert "Linux version" in console(conn, server)

    conn.compute.reboot_server(server, "HARD")
    assert conn.compute.get_server(server.id).status == "HARD_REBOOT"
    wait_status(conn, server, "ACTIVE", 120)
    with ssh_connect(address, guest_key) as client:
        status, new_boot_id = run(client,
                                  "cat /proc/sys/kernel/random/boot_id")
    assert status == 0
    assert new_boot_id != boot_id


def test_stop_and_start_through_the_api(conn, running_guest, guest_key):
    server, address = running_guest
    conn.compute.stop_server(server)
    wait_shutoff(conn, server, timeout=120)
    assert qemu_pids(server.id) == []
    with pytest.raises(OSError):
        socket.create_connection((address, 22), timeout=5).close()

    conn.compute.start_server(server)
    wait_status(conn, server, "ACTIVE", 120)
    with ssh_connect(address, guest_key) as client:
        status, out = run(client, "echo back")
    assert (status, out.strip()) == (0, "back")


@pytest.fixture
def installer_images(conn, cleanup, test_cloud, unique_name):
    """The test installer's kernel and initrd as Glance aki/ari images."""
    tree = os.path.join(test_cloud.state_dir, "www", "installer")
    ids = {}
    for name, fmt in (("vmlinuz", "aki"), ("initrd.img", "ari")):
        image = conn.image.create_image(
            name="%s-%s" % (unique_name, name), disk_format=fmt,
            container_format=fmt, filename=os.path.join(tree, name))
        cleanup.append(lambda image=image: conn.image.delete_image(image))
        ids[fmt] = image.id
    return ids


def blank_image(conn, cleanup, name, **properties):
    """A small blank raw disk image carrying the given properties."""
    image = conn.image.create_image(
        name=name, disk_format="raw", container_format="bare",
        data=io.BytesIO(b"\0" * 1024 * 1024), **properties)
    cleanup.append(lambda: conn.image.delete_image(image))
    return image


@pytest.mark.slow  # a whole install; product builds cover it too
def test_direct_kernel_boot_installs_then_powers_off(
        conn, cleanup, unique_name, keypair, guest_key, installer_images):
    """kernel_id/ramdisk_id/os_command_line boot the installer, which
    reads its script from the config drive, installs and powers off; the
    snapshot of the installed disk boots to SSH."""
    image = blank_image(conn, cleanup, unique_name + "-boot",
                        kernel_id=installer_images["aki"],
                        ramdisk_id=installer_images["ari"],
                        os_command_line="console=ttyS0")
    script = "\n".join([
        "user %s" % GUEST_USER,
        "sshkey %s %s %s" % (GUEST_USER, guest_key.get_name(),
                             guest_key.get_base64()),
        "%post", "echo installed-by-test > /etc/imgfac-test", "%end",
        "poweroff", ""])
    installer = boot(conn, cleanup, unique_name, image, config_drive=True,
                     user_data=base64.b64encode(script.encode()).decode())
    started = time.monotonic()
    wait_shutoff(conn, installer, timeout=INSTALL_TIMEOUT)
    print("install -> SHUTOFF: %.1f s" % (time.monotonic() - started))
    assert "INSTALLATION COMPLETE" in console(conn, installer)

    jeos = conn.compute.create_server_image(installer, unique_name + "-jeos",
                                            wait=True, timeout=300)
    cleanup.append(lambda: conn.image.delete_image(jeos))
    # The snapshot inherits the installer's kernel properties (Nova copies
    # the image properties): without removing them it would boot the
    # installer again.
    remove_properties(conn, jeos, ("kernel_id", "ramdisk_id",
                                   "os_command_line"))
    server = boot(conn, cleanup, unique_name + "-jeos", jeos,
                  key_name=keypair.name, config_drive=True)
    with ssh_connect(fixed_ip(server), guest_key) as client:
        status, out = run(client, "cat /etc/imgfac-test")
    assert (status, out.strip()) == (0, "installed-by-test")


def remove_properties(conn, image, names):
    """Remove image properties with a Glance JSON patch."""
    patch = [{"op": "remove", "path": "/" + name} for name in names]
    response = conn.image.patch(
        "/images/" + image.id, json=patch,
        headers={"Content-Type":
                 "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text

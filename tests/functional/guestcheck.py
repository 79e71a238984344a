"""Boot a built image (in local QEMU or in the test cloud) and look inside it
over SSH."""
import contextlib
import os
import shutil
import tempfile
import uuid

from novaimagebuilder.installer import configdrive
from novaimagebuilder.images import formats
from novaimagebuilder.machines import qemu
from novaimagebuilder.guest import ssh
from novaimagebuilder import waiter


def _key():
    import paramiko
    key = paramiko.ECDSAKey.generate(bits=256)
    return key, "%s %s check" % (key.get_name(), key.get_base64())


@contextlib.contextmanager
def _logged_in(host, port, user, key):
    # Checks the image, not host keys: the first key is accepted at once.
    guest = ssh.SSHGuest(host, port, user, key, command_prefix="sudo",
                         key_grace=0)
    guest.wait_until_reachable(600)
    try:
        yield guest
    finally:
        guest.close()


@contextlib.contextmanager
def booted(image, user="debian", machine=None):
    """Yield an SSHGuest logged in to a local copy-on-write boot of ``image``
    (on a machine_model.Machine when given)."""
    key, public = _key()
    with tempfile.TemporaryDirectory(prefix="imgfac-check-") as workdir:
        overlay = os.path.join(workdir, "check.qcow2")
        fmt = "raw" if image.endswith(".raw") else "qcow2"
        formats.qemu_img("create", "-q", "-f", "qcow2", "-b", image, "-F",
                         fmt, overlay)
        drive = configdrive.build(os.path.join(workdir, "cd.iso"),
                                  str(uuid.uuid4()), "check",
                                  public_keys={"check": public})
        accel, _ = qemu.choose_accelerator()
        nvram = None
        if machine is not None and machine.firmware:
            nvram = os.path.join(workdir, "vars.fd")
            shutil.copyfile(machine.firmware.vars_template, nvram)
        vm = qemu.VM(workdir, "check", overlay, accel, cdroms=[drive],
                     ssh=True, machine=machine, nvram=nvram).start()
        try:
            with _logged_in("127.0.0.1", vm.ssh_port, user, key) as guest:
                yield guest
        finally:
            vm.kill()


@contextlib.contextmanager
def booted_in_cloud(conn, image_id, user="debian"):
    """Yield an SSHGuest on a server booted from ``image_id``; everything made
    for it is removed afterwards."""
    key, public = _key()
    name = "imgfac-ft-check-" + uuid.uuid4().hex[:8]
    conn.compute.create_keypair(name=name, public_key=public)
    server = None
    try:
        network = conn.network.find_network("imgfac-net")
        server = conn.compute.create_server(
            name=name, image_id=image_id, key_name=name, config_drive=True,
            flavor_id=conn.compute.find_flavor("2").id,
            networks=[{"uuid": network.id}])
        server = waiter.wait_for(
            "waiting for the check server", lambda: conn.compute.get_server(
                server.id), lambda s: s.status == "ACTIVE", timeout=300,
            failed=lambda s: s.status == "ERROR" and str(s.fault))
        address = [a["addr"] for addrs in server.addresses.values()
                   for a in addrs if a["version"] == 4][0]
        with _logged_in(address, 22, user, key) as guest:
            yield guest
    finally:
        if server is not None:
            conn.compute.delete_server(server.id)
            conn.compute.wait_for_delete(server)
        conn.compute.delete_keypair(name, ignore_missing=True)

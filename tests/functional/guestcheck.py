"""Boot a built image in QEMU and look inside it over SSH."""
import contextlib
import os
import tempfile
import uuid

from novaimagebuilder import configdrive
from novaimagebuilder import local
from novaimagebuilder import qemu
from novaimagebuilder import ssh


@contextlib.contextmanager
def booted(image, user="debian"):
    """Yield an SSHGuest logged in to a copy-on-write boot of ``image``."""
    import paramiko
    key = paramiko.ECDSAKey.generate(bits=256)
    public = "%s %s check" % (key.get_name(), key.get_base64())
    with tempfile.TemporaryDirectory(prefix="imgfac-check-") as workdir:
        overlay = os.path.join(workdir, "check.qcow2")
        fmt = "raw" if image.endswith(".raw") else "qcow2"
        local.qemu_img("create", "-q", "-f", "qcow2", "-b", image, "-F", fmt,
                       overlay)
        drive = configdrive.build(os.path.join(workdir, "cd.iso"),
                                  str(uuid.uuid4()), "check",
                                  public_keys={"check": public})
        accel, _ = qemu.choose_accelerator()
        vm = qemu.VM(workdir, "check", overlay, accel, cdroms=[drive],
                     ssh=True).start()
        try:
            guest = ssh.SSHGuest("127.0.0.1", vm.ssh_port, user, key,
                                 command_prefix="sudo")
            guest.wait_until_reachable(600)
            try:
                yield guest
            finally:
                guest.close()
        finally:
            vm.kill()

"""The local backend: the build's machines are QEMU processes on this host.

The installer writes a blank qcow2 disk; that disk becomes the JEOS and the
backing file of the customization VM's copy-on-write overlay; the overlay is
flattened into the final image. Everything lives in one work directory
(the VMs' QMP sockets aside, see :mod:`qemu`); VMs are tagged with the build
id.
"""
import os
import uuid

from novaimagebuilder import configdrive
from novaimagebuilder import errors
from novaimagebuilder import formats
from novaimagebuilder import initrd
from novaimagebuilder import pipeline
from novaimagebuilder import qemu

DEFAULT_DISK_SIZE = 10 * 1024 ** 3


class LocalBackend(pipeline.Backend):
    name = "local"

    def __init__(self, workdir, accel, memory_mb=1024, cpus=1,
                 image_format="qcow2", cancel=None, build_id=None):
        self.workdir = workdir
        self.build_id = build_id
        self.accel = accel
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.image_format = image_format
        self.cancel = cancel
        self._count = 0

    def _path(self, name):
        return os.path.join(self.workdir, name)

    def _vm(self, role, disk, **kwargs):
        self._count += 1
        vm = qemu.VM(self.workdir, "%s-%d" % (role, self._count), disk,
                     self.accel, memory_mb=self.memory_mb, cpus=self.cpus,
                     build_id=self.build_id, **kwargs)
        vm.disk = disk
        vm.files = [disk]
        return vm

    def prepare_media(self, media):
        return media.files

    def boot_installer(self, media, script, kind, cmdline, disk_size):
        disk = self._path("install.qcow2")
        formats.qemu_img("create", "-q", "-f", "qcow2", disk,
                         str(disk_size or DEFAULT_DISK_SIZE))
        drive = configdrive.build(
            self._path("installer-config.iso"), str(uuid.uuid4()), "installer",
            user_data=script)
        if "iso" in media:
            vm = self._vm("installer", disk, cdroms=[media["iso"], drive],
                          boot="d")
        else:
            ramdisk = media["ramdisk"]
            if kind in pipeline.INITRD_SCRIPTS:
                ramdisk = initrd.with_files(
                    ramdisk, {pipeline.INITRD_SCRIPTS[kind]: script.encode()},
                    self._path("installer-initrd"))
            vm = self._vm("installer", disk, cdroms=[drive],
                          kernel=media["kernel"], ramdisk=ramdisk,
                          cmdline=cmdline)
            if ramdisk != media["ramdisk"]:
                vm.files.append(ramdisk)
        vm.files.append(drive)
        return vm.start()

    def wait_powered_off(self, machine, what, timeout, inactivity=None,
                         screen=None):
        machine.wait_stopped(what, timeout, inactivity, cancel=self.cancel,
                             screen=screen)

    def power_off(self, machine):
        machine.power_off()

    def console(self, machine, lines=30):
        return machine.console(lines)

    def delete(self, machine):
        machine.kill()
        for path in machine.files + [machine.console_path]:
            if os.path.exists(path):
                os.unlink(path)

    def capture(self, machine, role):
        if machine.running():
            raise errors.BuildError("%s is still running" % machine)
        if role == "jeos":
            jeos = self._path("jeos.qcow2")
            os.rename(machine.disk, jeos)
            machine.files.remove(machine.disk)
            return jeos
        image = self._path("image." + self.image_format)
        formats.qemu_img("convert", "-O", self.image_format, machine.disk, image)
        return image

    def discard(self, captured):
        if os.path.exists(captured):
            os.unlink(captured)

    def boot_guest(self, jeos, user, public_key):
        overlay = self._path("guest.qcow2")
        # The JEOS is qcow2; a finished image (a target's base) may be raw.
        formats.qemu_img("create", "-q", "-f", "qcow2", "-b", jeos, "-F",
                         formats.info(jeos)["format"], overlay)
        drive = configdrive.build(self._path("guest-config.iso"),
                                  str(uuid.uuid4()), "imgfac-guest",
                                  public_keys={"imgfac-nova": public_key})
        vm = self._vm("guest", overlay, cdroms=[drive], ssh=True)
        vm.files.append(drive)
        return vm.start()

    def ssh_address(self, machine):
        return "127.0.0.1", machine.ssh_port

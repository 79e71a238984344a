"""The local backend: the build's machines are QEMU processes on this host.

The installer writes a blank qcow2 disk; that disk becomes the JEOS and the
backing file of the customization VM's copy-on-write overlay; the overlay is
flattened into the final image. Everything lives in one work directory
(the VMs' QMP sockets aside, see :mod:`qemu`); VMs are tagged with the build
id. qemu-img is told every disk's format: the disks made here are qcow2, and
what the guest boots from (the JEOS, or the image a target customizes) is
inspected as ``guest_format`` first.
"""
import json
import logging
import os
import shutil
import tempfile
import time
import uuid

from novaimagebuilder.installer import configdrive
from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.installer import initrd
from novaimagebuilder.images import jeos
from novaimagebuilder import pipeline
from novaimagebuilder import private
from novaimagebuilder.machines import qemu
from novaimagebuilder.installer import remaster

LOG = logging.getLogger(__name__)
DEFAULT_DISK_SIZE = 10 * 1024 ** 3
#: The disk of each role's machine in the work directory (a resumed build
#: finds a powered-off machine by it).
_DISKS = {"installer": "install.qcow2", "guest": "guest.qcow2"}


class LocalBackend(pipeline.Backend):
    name = "local"

    def __init__(self, workdir, accel, memory_mb=1024, cpus=1,
                 image_format="qcow2", cancel=None, build_id=None,
                 guest_format="qcow2", machine=None):
        self.workdir = workdir
        self.build_id = build_id
        self.accel = accel
        self.memory_mb = memory_mb
        self.cpus = cpus
        #: The format of the image :meth:`capture` makes.
        self.image_format = image_format
        #: The format of the disk :meth:`boot_guest` boots: a JEOS is
        #: qcow2, a base image a target customizes has its own.
        self.guest_format = guest_format
        self.cancel = cancel
        #: The VMs' CPU model and firmware (a machine_model.Machine; None:
        #: QEMU's defaults and SeaBIOS).
        self.machine = machine
        self._count = 0

    def jeos_scope(self):
        """The VM's memory shapes the install (swap), its CPUs may."""
        scope = {"backend": self.name, "memory_mb": self.memory_mb,
                 "cpus": self.cpus}
        scope.update(self.machine.scope() if self.machine else {})
        return scope

    def _path(self, name):
        return os.path.join(self.workdir, name)

    def _nvram(self):
        """The build's copy of the UEFI variables (made at its first VM and
        kept by the next, as a host keeps its NVRAM), or None."""
        if not (self.machine and self.machine.firmware):
            return None
        path = self._path("uefi-vars.fd")
        if not os.path.exists(path):
            shutil.copyfile(self.machine.firmware.vars_template, path)
        return path

    def _new_disk(self, name, size=None, backing=None):
        """A new qcow2 disk ``name`` in the work directory: blank, of
        ``size`` bytes, or a copy-on-write overlay of ``backing`` (in
        ``guest_format``); returns its path."""
        path = self._path(name)
        if backing:
            formats.qemu_img("create", "-q", "-f", "qcow2", "-b", backing,
                             "-F", self.guest_format, path)
        else:
            formats.qemu_img("create", "-q", "-f", "qcow2", path, str(size))
        return path

    def _vm(self, role, disk, number=None, **kwargs):
        """The machine ``role``-N on ``disk``, N counting this backend's
        machines; ``number``: the N of one an earlier run made (later ones
        count on from it, so no name or console file repeats)."""
        if number is None:
            number = self._count + 1
        self._count = max(self._count, number)
        vm = qemu.VM(self.workdir, "%s-%d" % (role, number), disk,
                     self.accel, memory_mb=self.memory_mb, cpus=self.cpus,
                     build_id=self.build_id, machine=self.machine,
                     nvram=self._nvram(), **kwargs)
        vm.disk = disk
        vm.files = [disk]
        return vm

    def prepare_media(self, media):
        return media.files

    def _stop_earlier_runs(self):
        """Stop the QEMU machines an earlier run of this build left running
        (its process died; they run in sessions of their own) and remove
        the QMP socket directories of its machines, running or not: a
        resumed step starts its machine anew. This backend runs none of its
        own when it boots one."""
        if not self.build_id:
            return
        qemu.stop_left_running(
            "qemu-system", lambda argv: qemu.build_of(argv) == self.build_id,
            "QEMU")
        tmp = tempfile.gettempdir()
        for name in os.listdir(tmp):
            if name.startswith(qemu.QMP_PREFIX + self.build_id):
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)

    def boot_installer(self, media, script, kind, cmdline, disk_size):
        self._stop_earlier_runs()
        disk = self._new_disk(_DISKS["installer"],
                              disk_size or DEFAULT_DISK_SIZE)
        drive = configdrive.build(
            self._path("installer-config.iso"), str(uuid.uuid4()), "installer",
            user_data=script)
        if "iso" in media:  # a copy that boots with cmdline: see NovaBackend
            files = {pipeline.INITRD_SCRIPTS[kind]: script.encode()} \
                if kind in pipeline.INITRD_SCRIPTS else {}
            iso = remaster.with_files(media["iso"], files, cmdline,
                                      self._path("installer.iso"))
            vm = self._vm("installer", disk, cdroms=[iso, drive], boot="d")
            vm.files.append(iso)
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

    def adopt(self, identifier):
        """A QEMU process is driven by the process that started it (its
        monitor, its console): a resumed build cannot take it over, so the
        one an earlier run left running is stopped and the build undone. One
        that powered off meanwhile is the machine as it was left, its disk
        in the work directory (errors.Gone when that is gone too)."""
        name = qemu.NAME_PREFIX + "%s-%s" % (self.build_id, identifier)
        running = any(name in argv for _, argv in qemu.processes())
        self._stop_earlier_runs()
        if running:
            raise errors.BuildError(
                "%s: a local machine cannot be taken over from the process "
                "that started it (it was stopped); the build is undone"
                % identifier)
        role, _, number = identifier.rpartition("-")
        disk = self._path(_DISKS.get(role, identifier + ".qcow2"))
        if not os.path.exists(disk):
            raise errors.Gone("%s is not running and its disk is gone; the "
                              "build is undone" % identifier)
        LOG.info("%s powered off while no process drove it: going on with "
                 "its disk", identifier)
        return self._vm(role, disk, number=int(number))

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
        formats.qemu_img("convert", "-f", "qcow2", "-O", self.image_format,
                         machine.disk, image)
        return image

    def discard(self, captured):
        if os.path.exists(captured):
            os.unlink(captured)

    def boot_guest(self, jeos, user, public_key, user_data=None):
        self._stop_earlier_runs()
        formats.inspect(jeos, self.guest_format, "the disk to boot (%s)"
                        % jeos)
        if os.path.dirname(os.path.abspath(jeos)) != os.path.abspath(
                self.workdir):  # a JEOS cache entry: the build's own link
            _link_or_copy(jeos, self._path("jeos.qcow2"))
            jeos = self._path("jeos.qcow2")
        overlay = self._new_disk(_DISKS["guest"], backing=jeos)
        drive = configdrive.build(self._path("guest-config.iso"),
                                  str(uuid.uuid4()), "imgfac-guest",
                                  public_keys={"imgfac-nova": public_key},
                                  user_data=user_data)
        vm = self._vm("guest", overlay, cdroms=[drive], ssh=True)
        vm.files.append(drive)
        return vm.start()

    def ssh_address(self, machine):
        return "127.0.0.1", machine.ssh_port


class JeosCache(jeos.Cache):
    """JEOS cache entries as ``<key>.qcow2`` files with a ``<key>.json``
    beside them, in a directory; builds use hard links (or copies) of them,
    so removing an entry never pulls a disk from under a running VM."""

    def __init__(self, path):
        self.path = path
        self.where = path
        if os.path.isdir(path):
            private.directory(path)  # made before caches were private

    def _files(self, key):
        base = os.path.join(self.path, key)
        return base + ".qcow2", base + ".json"

    def _read(self, key):
        disk, meta = self._files(key)
        with open(meta) as handle:
            data = json.load(handle)
        return jeos.Entry(key, disk, data["name"], float(data["created"]),
                          data.get("build"), os.path.getsize(disk))

    def entries(self):
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                try:
                    found.append(self._read(name[:-len(".json")]))
                except (OSError, ValueError, KeyError):
                    continue  # half-written or half-removed: not an entry
        return found

    def find(self, key):
        try:
            entry = self._read(key)
            formats.qemu_img("check", "-q", "-f", "qcow2", entry.id)
        except (OSError, ValueError, KeyError, errors.BuildError) as exc:
            if any(os.path.exists(path) for path in self._files(key)):
                LOG.warning("Ignoring the broken JEOS cache entry %s: %s; "
                            "removing it", key, exc)
                self.remove(jeos.Entry(key, self._files(key)[0], "", 0))
            return None
        return entry

    def add(self, captured, key, name, build):
        private.directory(self.path)
        disk, meta = self._files(key)
        _link_or_copy(captured, disk)
        private.file(disk)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".entry-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"name": name, "created": time.time(), "build": build},
                      handle)
        os.replace(tmp, meta)  # the entry exists from here on
        return self._read(key)

    def remove(self, entry):
        disk, meta = self._files(entry.key)
        for path in (meta, disk):  # without its .json it is no entry
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _link_or_copy(source, destination):
    """Put ``source`` at ``destination`` atomically: a hard link when both
    are on one file system, else a copy."""
    tmp = os.path.join(os.path.dirname(destination),
                       ".%s.%s" % (os.path.basename(destination),
                                   uuid.uuid4().hex[:8]))
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, destination)

"""The libvirt backend: the build's machines are transient libvirt domains.

It is the local backend (:mod:`local`: media, remastered ISOs, config
drives, JEOS and image capture, the CPU and firmware of :mod:`machine_model`)
with libvirt running the VMs: a build's files are in a directory storage
pool of its own (``imgfac-<build id>``, in a directory libvirt's QEMU user
can reach), its disks are volumes of that pool, and its domains are
described by :mod:`libvirt_xml` (named and tagged with the build). libvirt
starts QEMU as its own user under its security drivers; ``virsh list`` shows
the build's machine.

libvirt, not the build's process, runs the domains, so a resumed build
takes over the machine an earlier run left (the domain's XML is kept in the
work directory): an installer goes on installing, a powered-off machine's
disk is captured. A customization guest is booted anew (its SSH keys died
with the earlier process), after the earlier one is destroyed.
"""
import logging
import os
import shutil

from novaimagebuilder import errors
from novaimagebuilder.machines import libvirt_xml
from novaimagebuilder.machines import local
from novaimagebuilder.machines import qemu
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)
PREFIX = "imgfac-"


def connect(uri):
    """A libvirt connection to ``uri``; a one-line BuildError when the
    binding is missing or the daemon cannot be reached."""
    try:
        import libvirt
    except ImportError:
        raise errors.BuildError(
            "the libvirt plugin needs libvirt's Python binding (pip install "
            "libvirt-python, or Debian's python3-libvirt)") from None
    # Its errors are raised as exceptions, which we explain; not printed.
    libvirt.registerErrorHandler(lambda context, error: None, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise errors.BuildError("cannot connect to libvirt at %s: %s (is "
                                "libvirtd running?)" % (
                                    uri, exc.get_error_message())) from None


def _missing(exc):
    """Whether a libvirtError says the domain or pool is gone."""
    import libvirt
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN,
                                    libvirt.VIR_ERR_NO_STORAGE_POOL,
                                    libvirt.VIR_ERR_NO_STORAGE_VOL,
                                    libvirt.VIR_ERR_OPERATION_INVALID)


class Domain(qemu.VM):
    """One transient domain; its console and waits are a local VM's (the
    serial console is a file)."""

    def __init__(self, conn, xml, name, console_path, ssh_port):
        self.conn = conn
        self.xml = xml
        self.name = name
        self.console_path = console_path
        self.ssh_port = ssh_port
        self.accel = None
        self._domain = None

    def __str__(self):
        return "libvirt domain %s" % self.name

    @classmethod
    def taken_over(cls, conn, xml):
        """The Domain ``xml`` describes, bound to the domain libvirt runs
        under its name (if it runs: a transient domain is gone once it has
        powered off)."""
        import libvirt
        found = libvirt_xml.described(xml)
        vm = cls(conn, xml, found["name"], found["console_path"],
                 found["ssh_port"])
        vm.disk = found["disk"]
        vm.files = [vm.disk]
        try:
            vm._domain = conn.lookupByName(vm.name)
        except libvirt.libvirtError as exc:
            if not _missing(exc):
                raise errors.BuildError("libvirt did not find %s: %s" % (
                    vm.name, exc.get_error_message())) from None
        return vm

    def start(self):
        import libvirt
        LOG.info("Starting the libvirt domain %s", self.name)
        try:
            self._domain = self.conn.createXML(self.xml, 0)
        except libvirt.libvirtError as exc:
            raise errors.BuildError("libvirt did not start %s: %s" % (
                self.name, exc.get_error_message())) from None
        return self

    def running(self):
        import libvirt
        if self._domain is None:
            return False
        try:
            return bool(self._domain.isActive())
        except libvirt.libvirtError as exc:
            if _missing(exc):  # a transient domain is gone once it stops
                return False
            raise

    def power_off(self, timeout=60):
        """ACPI power button, then destroy if the guest ignores it."""
        import libvirt
        if not self.running():
            return
        try:
            self._domain.shutdown()
            waiter.wait_for("waiting for %s to power off" % self.name, self.running,
                            lambda running: not running, timeout=timeout)
        except (libvirt.libvirtError, errors.BuildError) as exc:
            LOG.info("%s did not power off (%s); destroying it", self.name,
                     exc)
        self.kill()

    def kill(self):
        destroy(self._domain)


def destroy(domain):
    """Stop a transient domain for sure (it is gone then)."""
    import libvirt
    if domain is None:
        return
    try:
        domain.destroy()
    except libvirt.libvirtError as exc:
        if not _missing(exc):
            raise errors.BuildError("libvirt did not destroy %s: %s" % (
                domain.name(), exc.get_error_message())) from None


class LibvirtBackend(local.LocalBackend):
    name = "libvirt"

    def __init__(self, conn, pool, workdir, accel, tag, level=1, **kwargs):
        super().__init__(workdir, accel, **kwargs)
        self.conn = conn
        #: The build's storage pool, a directory pool at ``workdir``.
        self.pool = pool
        #: The libvirt_xml.Tag of the build's domains (role aside).
        self.tag = tag
        #: The OS's x86-64 level, whose features the CPU must have.
        self.level = level

    def prepare_media(self, media):
        """The kernel and initrd copied into the pool (the media cache is
        private; libvirt's QEMU user reads only the pool). An ISO's copy is
        made there when the installer boots (:mod:`remaster`)."""
        files = dict(media.files)
        for key in ("kernel", "ramdisk"):
            if key in files:
                copy = self._path("media-" + key)
                shutil.copyfile(files[key], copy)
                files[key] = copy
        return files

    def adopt(self, identifier):
        """Take over the domain ``identifier`` an earlier run of the build
        started (running, or powered off with its disk kept); errors.Gone
        when it left none."""
        try:
            with open(self._path(identifier + ".xml")) as handle:
                vm = Domain.taken_over(self.conn, handle.read())
        except FileNotFoundError:
            raise errors.Gone("%s is not there" % identifier) from None
        if not vm.running() and not os.path.exists(vm.disk):
            raise errors.Gone("%s is not there" % identifier)
        LOG.info("Taking over %s (%s), left by an earlier run of this build",
                 vm, "running" if vm.running() else "powered off")
        return vm

    def _stop_earlier_runs(self):
        """Destroy the domains an earlier run of this build left running:
        a rerun step starts its machine anew."""
        for tag, domain in build_domains(self.conn):
            if tag.build == self.build_id:
                LOG.info("Destroying the libvirt domain %s, left running by "
                         "an earlier run of this build", domain.name())
                destroy(domain)

    def boot_guest(self, jeos, user, public_key, user_data=None):
        """The local backend's guest, on a copy of the JEOS: libvirt gives
        a backing file to its QEMU user and leaves it so, and the JEOS (or
        the base image a target boots) is also a JEOS cache entry's or the
        store's file."""
        self._stop_earlier_runs()
        base = self._path("guest-base.qcow2")
        shutil.copyfile(jeos, base)
        return super().boot_guest(base, user, public_key, user_data)

    def _new_disk(self, name, size=None, backing=None):
        """A qcow2 volume of the build's pool (one an earlier run of the
        build made under that name is replaced)."""
        import libvirt
        self.pool.refresh(0)
        if name in self.pool.listVolumes():
            self.pool.storageVolLookupByName(name).delete(0)
        if backing:
            size = self.pool.storageVolLookupByName(
                os.path.basename(backing)).info()[1]
        try:
            volume = self.pool.createXML(libvirt_xml.volume(
                name, size, backing, self.guest_format), 0)
        except libvirt.libvirtError as exc:
            raise errors.BuildError("libvirt did not create the volume %s: "
                                    "%s" % (name, exc.get_error_message())
                                    ) from None
        return volume.path()

    def _vm(self, role, disk, cdroms=(), kernel=None, ramdisk=None,
            cmdline=None, ssh=False, boot="c"):
        self._count += 1
        name = "%s%s-%s-%d" % (PREFIX, self.build_id, role, self._count)
        console_path = self._path("%s-%d.console.log" % (role, self._count))
        ssh_port = qemu.free_port() if ssh else None
        xml = libvirt_xml.domain(
            name, libvirt_xml.Tag(self.tag.build, role, self.tag.owner,
                                  self.tag.store),
            self.accel, self.memory_mb, self.cpus, disk, console_path,
            cdroms=cdroms, kernel=kernel, ramdisk=ramdisk, cmdline=cmdline,
            ssh_port=ssh_port, boot=boot, machine=self.machine,
            level=self.level, nvram=self._path("uefi-vars.fd"))
        with open(self._path(name + ".xml"), "w") as handle:
            handle.write(xml)  # for a resumed build to take it over
        vm = Domain(self.conn, xml, name, console_path, ssh_port)
        vm.disk = disk
        vm.files = [disk]
        return vm


def create_pool(conn, build_id, path):
    """The build's transient directory pool at ``path`` (made already); the
    one an earlier run of the build left is stopped first (its files stay,
    and are the new pool's volumes)."""
    import libvirt
    earlier = build_pools(conn).get(build_id)
    if earlier is not None:
        stop_pool(earlier)
    try:
        pool = conn.storagePoolCreateXML(libvirt_xml.pool(
            PREFIX + build_id, path), 0)
    except libvirt.libvirtError as exc:
        raise errors.BuildError("libvirt did not create the storage pool "
                                "for %s: %s" % (path, exc.get_error_message())
                                ) from None
    return pool


def stop_pool(pool):
    """Stop (and so forget) a build's transient pool; its directory and
    files stay, for the caller to remove or keep (keep_on_failure)."""
    import libvirt
    try:
        pool.destroy()
    except libvirt.libvirtError as exc:
        if not _missing(exc):
            raise errors.BuildError("libvirt did not stop the storage pool "
                                    "%s: %s" % (pool.name(),
                                                exc.get_error_message())
                                    ) from None


def build_domains(conn):
    """``[(Tag, domain)]`` of the domains tagged by builds."""
    found = []
    for domain in conn.listAllDomains(0):
        tag = libvirt_xml.tag_of(domain.XMLDesc(0))
        if tag is not None:
            found.append((tag, domain))
    return found


def build_pools(conn):
    """``{build id: pool}`` of the build pools libvirt has."""
    return {pool.name()[len(PREFIX):]: pool
            for pool in conn.listAllStoragePools(0)
            if pool.name().startswith(PREFIX)}

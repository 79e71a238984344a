"""The local OS plugin: builds base images on this machine with QEMU (the
Oz/TinMan path). It is the default when no cloud is configured."""
import contextlib
import glob
import logging
import os
import shutil
import tempfile

from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common
from novaimagebuilder import sweep

LOG = logging.getLogger(__name__)
#: A build's work directory in the store is ``.work-<build id>-*``; it holds
#: the "host:pid" of the process running the build.
WORKDIR_PREFIX = ".work-"
OWNER_FILE = "owner.pid"


class LocalOS(base.OSPlugin):
    """Installs and customizes the OS in local QEMU virtual machines."""

    runs_on_host = True
    info = base.PluginInfo(
        type="os", targets=((None, None, None),),
        description="builds base images locally with QEMU (KVM or TCG)",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")
    parameters = common.PIPELINE_PARAMETERS + (
        Parameter("accel", "QEMU accelerator: auto, kvm or tcg",
                  default="auto", choices=("auto", "kvm", "tcg")),
        Parameter("memory", "memory of the build VMs in MiB", type="int",
                  default=1024, minimum=256),
        Parameter("cpus", "virtual CPUs of the build VMs", type="int",
                  default=1, minimum=1),
        Parameter("image_format", "format of the image data",
                  default="qcow2", choices=("qcow2", "raw")),
    ) + common.FIRMWARE_PARAMETERS

    @classmethod
    def preferred(cls, conf):
        """Default when no cloud is configured."""
        return not common.cloud_configured(conf)

    def check(self, template, parameters):
        """The install script, jump host and proxies, before anything is
        created."""
        common.install_script(template, parameters)
        common.check_guest_access(parameters)
        _machine(template, parameters, self._accel(parameters)[0])

    @staticmethod
    def _accel(parameters):
        from novaimagebuilder.machines import qemu
        return qemu.choose_accelerator(parameters["accel"])

    #: What runs the build's VMs, for the activity line.
    runs_with = "QEMU"

    @contextlib.contextmanager
    def _backend(self, build, template, parameters, image_format, what,
                 guest_format="qcow2"):
        """A backend for ``template``'s OS (see :meth:`_machines`) in a work
        directory of its own (:meth:`_workdir_parent`), removed afterwards
        (kept on failure with keep_on_failure)."""
        accel, why = self._accel(parameters)
        machine = _machine(template, parameters, accel)
        build.progress(1, "%s locally with %s (%s)" % (what, self.runs_with,
                                                       why))
        build.set_property("accelerator", accel)
        if machine.cpu:
            build.set_property("cpu_model", machine.cpu)
        # A resumed build goes on in the work directory it had.
        prefix = "%s%s-" % (WORKDIR_PREFIX, build.identifier)
        parent = self._workdir_parent(build)
        earlier = glob.glob(os.path.join(glob.escape(parent), prefix + "*"))
        workdir = earlier[0] if earlier else tempfile.mkdtemp(
            prefix=prefix, dir=parent)
        with open(os.path.join(workdir, OWNER_FILE), "w") as handle:
            handle.write(sweep.this_process() + "\n")
        succeeded = False
        try:
            with self._machines(build, template, workdir, accel, machine,
                                parameters, image_format=image_format,
                                guest_format=guest_format) as backend:
                yield backend
            succeeded = True
        finally:
            if succeeded or not parameters["keep_on_failure"]:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                LOG.warning("Kept the work directory %s (keep_on_failure); "
                            "remove it with: rm -rf %s", workdir, workdir)

    def _workdir_parent(self, build):
        """Where the build's work directory is made: beside the store's
        image data (so the finished image is moved, not copied)."""
        return os.path.dirname(build.body_path)

    @contextlib.contextmanager
    def _machines(self, build, template, workdir, accel, machine, parameters,
                  **kwargs):
        """The backend whose VMs run in ``workdir``: a LocalBackend."""
        from novaimagebuilder.machines import local
        yield local.LocalBackend(
            workdir, accel, memory_mb=parameters["memory"],
            cpus=parameters["cpus"], cancel=build.cancel_event,
            build_id=build.identifier, machine=machine, **kwargs)

    def jeos_cache(self, parameters):
        from novaimagebuilder.machines import local
        return local.JeosCache(common.jeos_cache_dir(self.conf))

    def create_base_image(self, build, template, parameters):
        with self._backend(build, template, parameters,
                           parameters["image_format"], "Building") as backend:
            result = common.run_pipeline(build, backend, template,
                                         parameters, self.conf,
                                         self.jeos_cache(parameters))
            shutil.move(result.image, build.body_path)
            build.set_property("format", parameters["image_format"])

    def create_target_image(self, build, target, base_image, parameters):
        """Apply the target content for ``target`` (if any) in a QEMU boot
        of the base image's data, which ``build.body_path`` holds (in the
        format the base image records, which the result keeps)."""
        from novaimagebuilder.images import formats
        content = common.target_content(self, target, base_image)
        if content is None:
            return
        stored = common.base_parameters(self, base_image)
        fmt = common.data_format(base_image)
        formats.inspect(build.body_path, fmt,
                        "base image %s" % base_image.identifier)
        with self._backend(build, common.bare_template(base_image), stored,
                           fmt, "Adding the target content",
                           guest_format=fmt) as backend:
            result = common.customize_for_target(
                build, backend, build.body_path, content, stored, self.conf)
            shutil.move(result.image, build.body_path)
            build.set_property("format", fmt)

    def sweep(self, protected, parameters, dry_run=False):
        """Kill the QEMU processes, then remove the work directories and QMP
        socket directories of builds that ``protected`` does not keep."""
        from imgfac_nova import config
        from novaimagebuilder.machines import qemu
        workdirs = _workdirs(config.storage_path(self.conf))
        # Only what this store's builds left: another store's builds (their
        # work directories elsewhere) are that store's to sweep.
        ours = {build for build, _ in workdirs.values()}
        found = []
        owners = {}
        for pid, argv in qemu.processes():
            used = [w for w in workdirs if any(w in arg for arg in argv)]
            build = qemu.build_of(argv) or (used and workdirs[used[0]][0])
            if not build or build not in ours:
                continue  # not a VM of this store's builds
            owner = workdirs[used[0]][1] if used else None
            owners.update({arg: owner for arg in argv})
            name = argv[argv.index("-name") + 1] if "-name" in argv \
                else argv[0]
            found.append(sweep.Leftover(build, "QEMU process", str(pid), name,
                                        owner=owner))
        for path, (build, owner) in sorted(workdirs.items()):
            found.append(sweep.Leftover(build, "work directory", path, path,
                                        owner=owner))
        tmp = tempfile.gettempdir()
        for name in sorted(os.listdir(tmp)):
            build = name[len(qemu.QMP_PREFIX):][:36]
            if not name.startswith(qemu.QMP_PREFIX) or build not in ours:
                continue
            path = os.path.join(tmp, name)
            owner = next((o for arg, o in owners.items() if path in arg), None)
            found.append(sweep.Leftover(build, "QMP socket directory", path,
                                        path, owner=owner))

        def kill(leftover):
            qemu.kill(int(leftover.id))

        kinds = [sweep.Kind("QEMU process", kill,
                            lambda leftover: qemu.wait_gone(int(leftover.id))),
                 sweep.Kind("work directory",
                            lambda leftover: shutil.rmtree(leftover.id)),
                 sweep.Kind("QMP socket directory",
                            lambda leftover: shutil.rmtree(leftover.id))]
        return sweep.remove(found, kinds, protected, dry_run=dry_run, log=LOG)


def _machine(template, parameters, accel):
    """The build VMs' machine_model.Machine for ``template``'s OS: a CPU
    model that meets its x86-64 level, the firmware asked for. A one-line
    BuildError when this host cannot give one."""
    from novaimagebuilder.machines import machine_model
    return machine_model.for_os(template.os.name, template.os.version, accel,
                                parameters.get("firmware") or "bios",
                                bool(parameters.get("secure_boot")))


def _workdirs(store):
    """``{path: (build id, "host:pid" owner or None)}`` of the work directories in
    the store."""
    try:
        names = os.listdir(store)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        if not name.startswith(WORKDIR_PREFIX):
            continue
        path = os.path.join(store, name)
        try:
            with open(os.path.join(path, OWNER_FILE)) as handle:
                owner = handle.read().strip() or None
        except OSError:
            owner = None
        found[path] = (name[len(WORKDIR_PREFIX):][:36], owner)
    return found

"""The local OS plugin: builds base images on this machine with QEMU (the
Oz/TinMan path). It is the default when no cloud is configured."""
import logging
import os
import shutil
import tempfile

from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common

LOG = logging.getLogger(__name__)
WORKDIR_PREFIX = ".work-"


class LocalOS(base.OSPlugin):
    """Installs and customizes the OS in local QEMU virtual machines."""

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
    )

    @classmethod
    def preferred(cls, conf):
        """Default when no cloud is configured."""
        return not common.cloud_configured(conf)

    def create_base_image(self, build, template, parameters):
        from novaimagebuilder import local
        from novaimagebuilder import qemu

        accel, why = qemu.choose_accelerator(parameters["accel"])
        build.progress(1, "Building locally with QEMU (%s)" % why)
        build.set_property("accelerator", accel)
        # Beside the store, so the finished image is moved, not copied.
        workdir = tempfile.mkdtemp(prefix="%s%s-" % (WORKDIR_PREFIX,
                                                     build.identifier),
                                   dir=os.path.dirname(build.body_path))
        succeeded = False
        try:
            backend = local.LocalBackend(
                workdir, accel, memory_mb=parameters["memory"],
                cpus=parameters["cpus"],
                image_format=parameters["image_format"],
                cancel=build.cancel_event)
            result = common.run_pipeline(build, backend, template, parameters)
            os.replace(result.image, build.body_path)
            build.set_property("format", parameters["image_format"])
            succeeded = True
        finally:
            if succeeded or not parameters["keep_on_failure"]:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                LOG.warning("Kept the work directory %s (keep_on_failure); "
                            "remove it with: rm -rf %s", workdir, workdir)

    def sweep(self, protected, parameters, dry_run=False):
        """Kill the VMs and remove the work directories of builds that
        ``protected`` does not keep."""
        from imgfac_nova import config
        from novaimagebuilder import qemu
        from novaimagebuilder import sweep
        store = config.storage_path(self.conf)
        try:
            names = os.listdir(store)
        except FileNotFoundError:
            return []
        found = []
        for name in sorted(names):
            if not name.startswith(WORKDIR_PREFIX):
                continue
            build = name[len(WORKDIR_PREFIX):len(WORKDIR_PREFIX) + 36]
            workdir = os.path.join(store, name)
            found += [sweep.Leftover(build, "QEMU process", str(pid),
                                     str(pid))
                      for pid in qemu.processes_using(workdir)]
            found.append(sweep.Leftover(build, "work directory", workdir,
                                        workdir))
        kinds = [sweep.Kind("QEMU process",
                            lambda leftover: qemu.kill(int(leftover.id))),
                 sweep.Kind("work directory",
                            lambda leftover: shutil.rmtree(leftover.id))]
        return sweep.remove(found, kinds, protected, dry_run=dry_run, log=LOG)

"""The OpenStack cloud plugin: the ``openstack`` target (Image Factory's
``openstack-kvm``) and pushing it to a Glance.

The target image is the base image with its machine identity removed by
virt-sysprep (see :mod:`novaimagebuilder.sysprep` for why that tool), in
qcow2 (compressed) or raw, with the Glance properties Nova reads: os_distro,
os_version, architecture, hw_disk_bus, hw_vif_model, hw_qemu_guest_agent and
os_require_quiesce (when the guest agent is installed), min_disk, min_ram.
"""
import logging
import math
import time

from lxml import etree

from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import formats as format_targets
from imgfac_nova.plugins import provider

LOG = logging.getLogger(__name__)

#: Package names of the QEMU guest agent, as the ICICLE lists them.
GUEST_AGENT_PACKAGES = ("qemu-guest-agent",)
#: os_distro values (libosinfo short ids) for template OS names.
OS_DISTRO = {"rhel": "rhel", "redhat": "rhel", "centos": "centos",
             "fedora": "fedora", "debian": "debian", "ubuntu": "ubuntu",
             "sles": "sles", "opensuse": "opensuse", "windows": "windows"}


def agent_installed(icicle):
    """True when the ICICLE package list holds the QEMU guest agent."""
    if not icicle:
        return False
    try:
        root = etree.fromstring(icicle.encode())
    except etree.XMLSyntaxError:
        return False
    for package in root.iter("package"):
        name = (package.get("name") or "").split("_")[0]
        if name in GUEST_AGENT_PACKAGES:
            return True
    return False


def glance_properties(template, icicle, parameters):
    """The image properties Nova uses for an image of ``template``."""
    props = {
        "os_distro": OS_DISTRO.get(template.os.name.lower(),
                                   template.os.name.lower()),
        "os_version": template.os.version,
        "architecture": template.os.arch,
        "hw_disk_bus": parameters["hw_disk_bus"],
        "hw_vif_model": parameters["hw_vif_model"],
        "imgfac_template": template.name,
    }
    if agent_installed(icicle):
        props["hw_qemu_guest_agent"] = "yes"
        props["os_require_quiesce"] = "yes"
    return props


class OpenStack(provider.GlanceProvider):
    """Makes images for OpenStack (KVM) clouds and pushes them to Glance."""

    info = base.PluginInfo(
        type="cloud", targets=("openstack", "openstack-kvm"),
        description="OpenStack/KVM images (virt-sysprep, Nova's Glance "
                    "properties) pushed to a Glance",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")
    parameters = format_targets.CLOUD_PARAMETERS + provider.PARAMETERS + (
        Parameter("image_format", "format of the OpenStack image",
                  default="qcow2", choices=("qcow2", "raw")),
        Parameter("sysprep", "remove the machine identity with virt-sysprep",
                  type="bool", default=True),
        Parameter("sysprep_timeout", "seconds virt-sysprep may take",
                  type="int", default=1800, minimum=1),
        Parameter("hw_disk_bus", "hw_disk_bus image property",
                  default="virtio"),
        Parameter("hw_vif_model", "hw_vif_model image property",
                  default="virtio"),
        Parameter("min_ram", "min_ram (MiB) of the image", type="int",
                  default=0, minimum=0),
        Parameter("min_disk", "min_disk (GiB) of the image (default: the "
                  "virtual size, rounded up)", type="int", minimum=0),
    )

    def create_target_image(self, build, target, base_image, parameters):
        from imgfac_nova import template as tdl
        from novaimagebuilder import formats
        from novaimagebuilder import sysprep
        path = format_targets.fetch_base(build, base_image, parameters,
                                         auth=self.cloud_auth)
        if parameters["sysprep"]:
            build.progress(25, "Removing the machine identity (virt-sysprep)")
            started = time.monotonic()
            sysprep.run(path, formats.info(path)["format"],
                        timeout=parameters["sysprep_timeout"],
                        cancel=build.cancel_event)
            build.add_timing("sysprep",
                             orchestrator=round(time.monotonic() - started, 1))
        fmt = formats.FORMATS[parameters["image_format"]]
        found = format_targets.convert_in_place(build, fmt, 60, 99)
        format_targets.record_format(build, fmt.disk_format,
                                     fmt.container_format, found)
        template = tdl.parse_template(base_image.template, "base image %s"
                                      % base_image.identifier)
        build.set_property("glance_properties", glance_properties(
            template, base_image.icicle, parameters))
        build.set_property("min_disk", parameters.get("min_disk") or
                           math.ceil(found["virtual-size"] / 1024 ** 3))
        build.set_property("min_ram", parameters["min_ram"])

"""The disk-format cloud plugin: qcow2, raw, vmdk, vhd, vhdx and ova targets.

The base image's bytes are the local ``.body`` (copied to the target's
``build.body_path`` by the builder) or, for a base built in Nova, its Glance
image, streamed down. They are inspected as the format recorded for them
(see :func:`novaimagebuilder.images.formats.inspect`), qemu-img converts them and
the result is checked with ``qemu-img info``/``check`` before the image is
complete. Target images can be pushed to a Glance (see
:mod:`imgfac_nova.plugins.provider`).
"""
import logging
import os

from imgfac_nova import images
from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common
from imgfac_nova.plugins import provider
from imgfac_nova.plugins import provider_access

LOG = logging.getLogger(__name__)

#: Parameters for reaching the Glance of a base image built in Nova.
CLOUD_PARAMETERS = (
    Parameter("cloud", "clouds.yaml entry holding a Nova-built base image "
              "(default: the one it was built in)"),
    Parameter("region", "region of that cloud"),
)


#: How long a conversion may take.
CONVERT_PARAMETERS = (
    Parameter("convert_timeout", "seconds the conversion may take, plus "
              "convert_timeout_per_gib for each GiB of the disk's virtual "
              "size", type="int", default=600, minimum=1),
    Parameter("convert_timeout_per_gib", "seconds the conversion may take "
              "for each GiB of the disk's virtual size", type="int",
              default=120, minimum=0),
)


def _connect_base_cloud(base_image, parameters, auth=None, timeout=None):
    from novaimagebuilder.images import glance
    from novaimagebuilder.machines import nova_connect
    stored = dict(base_image.parameters)
    stored.update({k: v for k, v in parameters.items() if v is not None})
    conn = nova_connect.connect(stored.get("cloud"), stored.get("region"),
                                stored.get("interface"), auth=auth, timeout=timeout)
    return glance.of(conn)


def fetch_base(build, base_image, parameters, percent=20, auth=None,
               timeout=None):
    """Make sure ``build.body_path`` holds the base image's bytes, inspected
    as the format recorded for them; returns the path and that (qemu-img)
    format, which the target's ``format`` property then holds.

    The bytes are the base image's data (its ``format`` property), what an
    OS plugin made of them (the target's ``format`` property), or for a
    Nova-built base its Glance image (Glance's ``disk_format``), streamed
    down as the caller ``auth`` (an API caller's token; None:
    openstacksdk's config), each request within ``timeout`` seconds."""
    from novaimagebuilder.images import formats
    what = "base image %s" % base_image.identifier
    if os.path.exists(build.body_path):
        fmt = build.get_property("format") or \
            common.data_format(base_image)
    else:
        fmt = _download_base(build, base_image, parameters, percent, auth,
                             timeout)
    formats.inspect(build.body_path, fmt, what)
    build.set_property("format", fmt)
    return build.body_path, fmt


def _download_base(build, base_image, parameters, percent, auth, timeout):
    """Stream a Nova-built base's Glance image to ``build.body_path``;
    returns its format."""
    from novaimagebuilder.images import formats
    from novaimagebuilder.images import download
    glance_id = base_image.properties.get(images.GLANCE_ID_PROPERTY)
    if not glance_id:
        raise provider_access.ProviderError(
            "base image %s has neither local data nor a Glance image"
            % base_image.identifier)
    client = _connect_base_cloud(base_image, parameters, auth, timeout)
    build.progress(1, "Downloading Glance image %s" % glance_id)
    image = download.download(client, glance_id, build.body_path,
                              progress=lambda p, done: build.progress(
                                  1 + p * (percent - 1) // 100,
                                  "Downloading Glance image %s: %d MiB" % (
                                      glance_id, done // 1024 ** 2)),
                              cancel=build.cancel_event)
    return formats.qemu_format(image["disk_format"])


def convert_in_place(build, base_image, source_format, fmt, start, end,
                     parameters, what=None):
    """Convert ``build.body_path`` (``base_image``'s bytes, in
    ``source_format``) to ``fmt`` and check it, within the time
    ``parameters`` give (:data:`CONVERT_PARAMETERS`); progress runs from
    ``start`` to ``end`` percent. Returns the qemu-img info."""
    from novaimagebuilder.images import formats
    from novaimagebuilder import waiter
    what = what or fmt.name
    partial = build.body_path + ".part"
    size = formats.info(build.body_path,
                        formats.qemu_format(source_format))["virtual-size"]
    timeout = waiter.for_size(size, parameters.get("convert_timeout", 600),
                              parameters.get("convert_timeout_per_gib",
                                             waiter.SECONDS_PER_GIB))
    doing = "Converting to %s%s" % (what, waiter.describe(timeout, size))
    build.progress(start, doing)
    stop_earlier_conversion(partial)
    formats.convert(build.body_path, source_format, partial, fmt,
                    progress=lambda p: build.progress(
                        start + p * (end - start) / 100, doing),
                    cancel=build.cancel_event,
                    what="base image %s" % base_image.identifier,
                    timeout=timeout)
    try:
        found = formats.verify(partial, fmt)
        os.replace(partial, build.body_path)
    except BaseException:
        _remove(partial)
        raise
    return found


def stop_earlier_conversion(partial):
    """Stop the qemu-img an earlier run of this build left writing
    ``partial`` (its process died, qemu-img did not): its lock on the file
    would refuse the conversion a resumed build starts again."""
    from novaimagebuilder.machines import qemu
    qemu.stop_left_running("qemu-img", lambda argv: partial in argv,
                           "qemu-img")


def record_format(build, disk_format, container_format, found):
    build.set_property("format", found["format"])
    build.set_property("disk_format", disk_format)
    build.set_property("container_format", container_format)
    build.set_property("virtual_size", found["virtual-size"])


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DiskFormats(provider.GlanceProvider):
    """Converts base images to plain disk formats with qemu-img."""

    info = base.PluginInfo(
        type="cloud", targets=("qcow2", "raw", "vmdk", "vhd", "vhdx", "ova"),
        description="disk formats with qemu-img: qcow2 (compressed), raw, "
                    "vmdk (streamOptimized), vhd (fixed), vhdx, ova",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")
    parameters = CLOUD_PARAMETERS + CONVERT_PARAMETERS + provider.PARAMETERS + (
        Parameter("cpus", "virtual CPUs in the OVA's descriptor", type="int",
                  default=1, minimum=1),
        Parameter("memory", "memory in MiB in the OVA's descriptor",
                  type="int", default=1024, minimum=4),
        Parameter("ova_network", "network name in the OVA's descriptor",
                  default="VM Network"),
    )

    def create_target_image(self, build, target, base_image, parameters):
        from novaimagebuilder.images import formats
        target = target.lower()
        _, source_format = fetch_base(build, base_image, parameters,
                                      auth=self.cloud_auth,
                                      timeout=self.cloud_timeout)
        if target != "ova":
            fmt = formats.FORMATS[target]
            found = convert_in_place(build, base_image, source_format, fmt,
                                     20, 99, parameters)
            record_format(build, fmt.disk_format, fmt.container_format, found)
            return
        found = convert_in_place(build, base_image, source_format,
                                 formats.FORMATS["vmdk"], 20, 90, parameters,
                                 "a streamOptimized VMDK for the OVA")
        self._pack_ova(build, base_image, parameters, found)

    def _pack_ova(self, build, base_image, parameters, found):
        from imgfac_nova import template as tdl
        from novaimagebuilder.images import ova
        template = tdl.parse_template(base_image.template, "base image %s"
                                      % base_image.identifier)
        machine = ova.Machine(
            name=template.name, os_name=template.os.name,
            os_version=template.os.version, cpus=parameters["cpus"],
            memory_mb=parameters["memory"],
            network=parameters["ova_network"])
        build.progress(92, "Packing the OVA")
        vmdk = build.body_path + ".vmdk"
        os.replace(build.body_path, vmdk)
        try:
            ova.write(build.body_path, machine, vmdk, found["virtual-size"])
        except BaseException:
            _remove(build.body_path)
            raise
        finally:
            _remove(vmdk)
        build.set_property("format", "ova")
        build.set_property("disk_format", "vmdk")
        build.set_property("container_format", "ova")
        build.set_property("virtual_size", found["virtual-size"])

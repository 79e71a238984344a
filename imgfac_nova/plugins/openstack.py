"""The OpenStack cloud plugin: the ``openstack`` target (Image Factory's
``openstack-kvm``) and pushing it to a Glance.

The target image is the base image with its machine identity removed, with
the Glance properties Nova reads and the provenance SCS-0102 asks for (see
:mod:`novaimagebuilder.images.image_properties`), the operator's
``image_properties`` over them, and min_disk, min_ram. It is made one of
two ways:

- from the base image's bytes here (a local base, or a Nova-built one
  streamed down): virt-sysprep on the disk (see :mod:`novaimagebuilder.guest.sysprep`
  for why that tool), then qcow2 (compressed) or raw;
- in the cloud, for a base built in Nova (``in_cloud``, the default there):
  the base boots in Nova once, gets the target content, removes its identity
  itself (:func:`novaimagebuilder.guest.sysprep.guest_script`) and powers off; its
  snapshot is the target image's private Glance image. No bytes come down,
  and a push to the same cloud and project hands that image over.
"""
import datetime
import logging
import math
import time

from lxml import etree

from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common
from imgfac_nova.plugins import formats as format_targets
from imgfac_nova.plugins import nova as nova_plugin
from imgfac_nova.plugins import provider
from imgfac_nova.plugins import provider_access

from novaimagebuilder import cloud

LOG = logging.getLogger(__name__)

#: Package names of the QEMU guest agent, as the ICICLE lists them.
GUEST_AGENT_PACKAGES = ("qemu-guest-agent",)
#: min_ram (MiB) of a target whose base build says no memory.
DEFAULT_MIN_RAM = 512


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


def glance_properties(template, icicle, parameters, base_parameters=None,
                      built=None):
    """The image properties for an image of ``template`` whose base build
    had ``base_parameters`` (firmware, default_user), with the operator's
    ``image_properties`` over them; a one-line BuildError when those
    contradict the build."""
    from novaimagebuilder.images import image_properties
    props = common.derived_properties(
        template, base_parameters or {}, built=built,
        guest_agent=agent_installed(icicle),
        hw_disk_bus=parameters["hw_disk_bus"],
        hw_vif_model=parameters["hw_vif_model"])
    props = image_properties.merged(props, parameters.get("image_properties"))
    props["imgfac_template"] = template.name
    return props


def min_ram(parameters, base_image):
    """``min_ram`` given, else the memory the base was built with (its
    installer and guest ran in it), else DEFAULT_MIN_RAM."""
    if parameters.get("min_ram") is not None:
        return parameters["min_ram"]
    return base_image.parameters.get("memory") or DEFAULT_MIN_RAM


def _not_in(specs, own):
    """The parameters of ``specs`` whose names ``own`` does not have."""
    names = {p.name for p in own}
    return tuple(p for p in specs if p.name not in names)


class OpenStack(provider.GlanceProvider):
    """Makes images for OpenStack (KVM) clouds and pushes them to Glance."""

    info = base.PluginInfo(
        type="cloud", targets=("openstack", "openstack-kvm"),
        description="OpenStack/KVM images (virt-sysprep, Nova's Glance "
                    "properties) pushed to a Glance",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")
    parameters = (format_targets.CLOUD_PARAMETERS +
                  format_targets.CONVERT_PARAMETERS + provider.PARAMETERS) + (
        Parameter("in_cloud", "make the image in the cloud that holds a "
                  "base built in Nova (a boot there, its snapshot the "
                  "image; no download) (default: true for such a base "
                  "unless image_format is given)", type="bool"),
        Parameter("image_format", "format of an image made from the bytes "
                  "here (default: qcow2; in the cloud the image has the "
                  "format of Nova's snapshot)", choices=("qcow2", "raw")),
        Parameter("sysprep", "remove the machine identity (virt-sysprep; "
                  "in the cloud: in the guest)", type="bool", default=True),
        Parameter("sysprep_timeout", "seconds the identity removal may take",
                  type="int", default=1800, minimum=1),
        Parameter("hw_disk_bus", "hw_disk_bus image property (scsi adds "
                  "hw_scsi_model virtio-scsi)", default="virtio"),
        Parameter("hw_vif_model", "hw_vif_model image property",
                  default="virtio"),
        Parameter("min_ram", "min_ram (MiB) of the image (default: the "
                  "memory the base was built with, else %d)"
                  % DEFAULT_MIN_RAM, type="int", minimum=0),
        Parameter("image_properties", "Glance properties to add or "
                  "override, a JSON object (e.g. {\"os_purpose\": "
                  "\"generic\", \"image_source\": \"https://...\"}); one "
                  "that contradicts the build (hw_firmware_type bios of a "
                  "UEFI build, another architecture) is refused before "
                  "anything is made"),
        Parameter("min_disk", "min_disk (GiB) of the image (default: the "
                  "virtual size, rounded up)", type="int", minimum=0),
    )

    #: A snapshot build is the Nova OS plugin's: its parameters too.
    snapshot_parameters = _not_in(nova_plugin.NovaOS.parameters, parameters)

    def _nova(self, provider_text, credentials, parameters):
        """The Nova OS plugin working in the provider's cloud (as its
        clouds.yaml entry, or logged in with the credentials), and its
        typed parameters."""
        from imgfac_nova import parameters as params
        parsed, conn = getattr(self, "_connection", None) or (None, None)
        if conn is None:
            parsed = provider_access.parse_provider(provider_text)
            conn = provider_access.connect(parsed, credentials,
                                           self.cloud_timeout)
        os_plugin = nova_plugin.NovaOS(self.conf)
        names = {p.name for p in nova_plugin.NovaOS.parameters}
        values = {k: v for k, v in parameters.items()
                  if k in names and v is not None}
        if parsed.cloud:
            values["cloud"] = parsed.cloud
            os_plugin.cloud_auth = self.cloud_auth
        else:
            values.pop("cloud", None)
            os_plugin.cloud_auth = conn.session.auth
            values.update(visibility_values(parsed))
        if parsed.definition.get("region"):
            values["region"] = parsed.definition["region"]
        return conn, os_plugin, params.resolve(
            nova_plugin.NovaOS.parameters, values, "nova")

    def check_snapshot(self, provider, credentials, template, parameters):
        """The Nova build's own checks (install script, flavor, network) in
        the provider's cloud."""
        conn, os_plugin, typed = self._nova(provider, credentials, parameters)
        os_plugin.check(template, typed)
        self._snapshot = (conn, os_plugin, typed)

    def snapshot_image_on_provider(self, build, provider, credentials, template,
                                   parameters):
        """Image Factory's snapshot build: the Nova OS plugin builds the
        image straight in the provider's cloud; its Glance image is the
        provider image (the bytes never leave that cloud)."""
        conn, os_plugin, typed = getattr(self, "_snapshot", None) or \
            self._nova(provider, credentials, parameters)
        build.set_provider_account_identifier(conn.account)
        build.set_identifier_on_provider(
            os_plugin.create_base_image(build, template, typed))

    def check_target(self, target, base_image, parameters):
        """The operator's image_properties against the base's template and
        firmware, before the target's record exists."""
        from imgfac_nova import template as tdl
        template = tdl.parse_template(base_image.template, "base image %s"
                                      % base_image.identifier)
        glance_properties(template, None, parameters, base_image.parameters)

    def create_target_image(self, build, target, base_image, parameters):
        from imgfac_nova import template as tdl
        from novaimagebuilder.images import formats
        from novaimagebuilder.guest import sysprep
        path, source_format = format_targets.fetch_base(
            build, base_image, parameters, auth=self.cloud_auth,
            timeout=self.cloud_timeout)
        if parameters["sysprep"]:
            build.progress(25, "Removing the machine identity (virt-sysprep)")
            started = time.monotonic()
            sysprep.run(path, source_format,
                        timeout=parameters["sysprep_timeout"],
                        cancel=build.cancel_event)
            build.add_timings({"sysprep": {
                "orchestrator": round(time.monotonic() - started, 1)}})
        fmt = formats.FORMATS[parameters.get("image_format") or "qcow2"]
        found = format_targets.convert_in_place(build, base_image,
                                                source_format, fmt, 60, 99,
                                                parameters)
        format_targets.record_format(build, fmt.disk_format,
                                     fmt.container_format, found)
        template = tdl.parse_template(base_image.template, "base image %s"
                                      % base_image.identifier)
        build.set_property("glance_properties", glance_properties(
            template, base_image.icicle, parameters, base_image.parameters))
        build.set_property("min_disk", parameters.get("min_disk") or
                           math.ceil(found["virtual-size"] / 1024 ** 3))
        build.set_property("min_ram", min_ram(parameters, base_image))

    def in_cloud(self, base_image, os_plugin, parameters):
        """``in_cloud`` when given, else true for a base built in Nova unless
        image_format asks for a conversion; a one-line ProviderError when
        ``in_cloud`` is true and cannot be."""
        from imgfac_nova import images
        built_in_nova = isinstance(os_plugin, nova_plugin.NovaOS) and \
            not base_image.data and (
                base_image.status != images.COMPLETE or
                images.GLANCE_ID_PROPERTY in base_image.properties)
        wanted = parameters.get("in_cloud")
        if wanted is None:
            return built_in_nova and not parameters.get("image_format")
        if wanted and not built_in_nova:
            raise provider_access.ProviderError(
                "in_cloud needs a base image built in Nova; base image %s "
                "was built by the %s plugin" % (base_image.identifier,
                                                base_image.plugin))
        if wanted and parameters.get("image_format"):
            raise provider_access.ProviderError(
                "in the cloud the image keeps the format of Nova's "
                "snapshot: leave image_format out, or set in_cloud false to "
                "convert a download")
        return wanted

    def create_target_image_in_cloud(self, build, target, base_image,
                                     os_plugin, parameters):
        """The base boots in Nova once (target content, identity removed
        in the guest, power-off); its snapshot, private and tagged with the
        target's id, is the target image, with Nova's properties (set as a
        step of the customize flow: when it fails, the flow's revert
        deletes the snapshot)."""
        from imgfac_nova import images
        from imgfac_nova import template as tdl
        from novaimagebuilder.guest import sysprep
        LOG.info("Making the target image in the cloud from Glance image %s "
                 "of base image %s: no download, no upload",
                 base_image.properties[images.GLANCE_ID_PROPERTY],
                 base_image.identifier)
        finish = ("the machine identity removal", sysprep.guest_script(),
                  parameters["sysprep_timeout"]) if parameters["sysprep"] \
            else None
        template = tdl.parse_template(base_image.template, "base image %s"
                                      % base_image.identifier)

        def describe(glance_id, conn, icicle):
            build.progress(96, "Setting Nova's properties of Glance image %s"
                           % glance_id)
            image = cloud.call("reading Glance image %s" % glance_id,
                               conn.image.get_image, glance_id)
            # Built when Nova began its snapshot (SCS-0102: no later than
            # the image's creation).
            props = glance_properties(
                template, icicle, parameters, base_image.parameters,
                built=datetime.datetime.fromisoformat(image.created_at))
            size = image.virtual_size  # None: Glance did not inspect it
            min_disk = parameters.get("min_disk") or (
                math.ceil(size / 1024 ** 3) if size else image.min_disk or 0)
            cloud.call("setting the properties of Glance image %s" % glance_id,
                       conn.image.update_image, glance_id, min_disk=min_disk,
                       min_ram=min_ram(parameters, base_image), **props)
            build.set_property(images.GLANCE_ID_PROPERTY, glance_id)
            build.set_property("in_cloud", True)
            build.set_property("glance_cloud", {
                key: base_image.parameters.get(key)
                for key in ("cloud", "region", "interface")})
            format_targets.record_format(build, image.disk_format,
                                         image.container_format, {
                                             "format": image.disk_format,
                                             "virtual-size": size})
            build.set_property("glance_properties", props)
            build.set_property("min_disk", min_disk)
            build.set_property("min_ram", min_ram(parameters, base_image))
            build.set_property("os_hash_algo", image.hash_algo)
            build.set_property("os_hash_value", image.hash_value)
        os_plugin.customize_in_cloud(
            build, target, base_image, finish, describe,
            cloud.NAME_PREFIX + build.identifier,
            {"imgfac_template": template.name,
             "imgfac_base_image": base_image.identifier})

    def delete_target_image(self, image, parameters):
        """Delete the Glance image of a target image made in the cloud."""
        from imgfac_nova import images
        glance_id = image.properties.get(images.GLANCE_ID_PROPERTY)
        if not glance_id or not image.properties.get("in_cloud"):
            return
        conn = provider.target_cloud(image, self.cloud_auth,
                                     self.cloud_timeout)
        cloud.call("Glance could not delete image %s" % glance_id,
                   conn.image.delete_image, glance_id, ignore_missing=True)


def visibility_values(parsed):
    """The Nova build's image_visibility from an Image Factory provider
    definition that sets it (is_public / visibility)."""
    if "visibility" in parsed.definition or "is_public" in parsed.definition:
        return {"image_visibility": parsed.visibility}
    return {}

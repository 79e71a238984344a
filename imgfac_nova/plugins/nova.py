"""The Nova OS plugin: builds base images inside an OpenStack cloud.

Credentials come only through openstacksdk's config loader (``OS_*``
variables, ``clouds.yaml``, the ``cloud`` parameter). The result is a Glance
image; the BaseImage record holds its id.
"""
import logging

from imgfac_nova import images
from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common

from novaimagebuilder import cloud

LOG = logging.getLogger(__name__)


class NovaOS(base.OSPlugin):
    """Installs and customizes the OS in Nova servers; the image goes to
    Glance."""

    info = base.PluginInfo(
        type="os", targets=((None, None, None),),
        description="builds base images inside an OpenStack cloud (Nova, "
                    "Glance, Neutron)",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")
    parameters = common.PIPELINE_PARAMETERS + (
        Parameter("cloud", "clouds.yaml entry (default: OS_CLOUD or the OS_* "
                  "variables)"),
        Parameter("region", "region name"),
        Parameter("interface", "endpoint interface: public, internal or admin",
                  choices=("public", "internal", "admin")),
        Parameter("flavor", "flavor name or id of the build servers"),
        Parameter("network", "network names or ids of the build servers, "
                  "comma-separated: a NIC on each, in order (default: the "
                  "project's only network)"),
        Parameter("ssh_network", "network (one of network) whose address "
                  "SSH uses (default: the first address)"),
        Parameter("ssh_ip_version", "IP version of the address SSH uses",
                  choices=("4", "6")),
        Parameter("ssh_host", "host name or address SSH uses, before any "
                  "other (e.g. one only the jump host reaches)"),
        Parameter("security_groups", "comma-separated security groups for the "
                  "customization server (default: a throw-away group opening "
                  "SSH)"),
        Parameter("ssh_source_cidr", "comma-separated networks the build's "
                  "throw-away group lets SSH in from (default: the address "
                  "the build connects from as the cloud sees it: this host's, "
                  "or the jump host's, with its floating/fixed pair)"),
        Parameter("request_floating_ip", "reach the customization server "
                  "through a floating IP", type="bool", default=False),
        Parameter("floating_ip_network", "external network for the floating "
                  "IP (default: the only external network)"),
        Parameter("config_drive", "give the servers a config drive",
                  type="bool", default=True),
        Parameter("direct_boot", "boot URL installs from the installer kernel "
                  "and ramdisk (kernel_id/ramdisk_id image properties)",
                  type="bool", default=True),
        Parameter("boot_from_volume", "boot the build servers from Cinder "
                  "volumes the build makes (default: when the flavor's root "
                  "disk is 0)", type="bool"),
        Parameter("volume_size", "size of those volumes in GiB (default: "
                  "disk_size, else the flavor's disk, else 10)", type="int",
                  minimum=1),
        Parameter("volume_type", "Cinder volume type of those volumes "
                  "(default: Cinder's default type)"),
        Parameter("admin_password", "admin password of the build servers",
                  secret=True),
        Parameter("image_name", "name of the Glance image (default: "
                  "imgfac-nova-<build id>)"),
        Parameter("image_visibility", "visibility of the Glance image",
                  default="private",
                  choices=("private", "shared", "community", "public")),
        Parameter("snapshot_timeout", "seconds a snapshot may take to become "
                  "an active Glance image, plus snapshot_timeout_per_gib for "
                  "each GiB of the flavor's disk", type="int", default=600,
                  minimum=1),
        Parameter("snapshot_timeout_per_gib", "seconds a snapshot may take "
                  "for each GiB of the flavor's disk", type="int",
                  default=120, minimum=0),
    ) + common.FIRMWARE_PARAMETERS

    @classmethod
    def preferred(cls, conf):
        """Default when a cloud is configured."""
        return common.cloud_configured(conf)

    def _connect(self, parameters):
        from novaimagebuilder.machines import nova_connect
        return nova_connect.connect(parameters.get("cloud"), parameters.get("region"),
                                    parameters.get("interface"), auth=self.cloud_auth,
                                    timeout=self.cloud_timeout)

    def check(self, template, parameters):
        """The install script (and the config drive it needs), jump host,
        proxies, ssh_host, credentials (a bare token must outlast the
        install timeout), flavor and networks (and, for ISO installs,
        stable device rescue), before anything is created."""
        from novaimagebuilder import errors
        from novaimagebuilder import pipeline
        _, kind = common.install_script(template, parameters)
        if not parameters["config_drive"] and kind in set(
                pipeline.SCRIPT_KERNEL_ARGS) - set(pipeline.INITRD_SCRIPTS):
            raise errors.BuildError(
                "config_drive is false, but the installer reads its %s from "
                "the config drive: leave config_drive true" % kind)
        common.check_guest_access(parameters)
        common.derived_properties(template, parameters)
        _ssh_host(parameters)
        _ssh_sources(parameters)
        if template.os.install.type == "url" and not parameters["direct_boot"]:
            raise errors.BuildError("URL installs boot the installer kernel "
                                    "directly: leave direct_boot true or "
                                    "install from an ISO")
        self._backend_args = self._resolve(parameters, template)
        from novaimagebuilder import tokens
        tokens.check_lasts(self._backend_args["conn"].session,
                           parameters["timeout"], "the build's install "
                           "timeout (%d s)" % parameters["timeout"])
        if template.os.install.type == "iso":
            from novaimagebuilder.machines import nova_connect
            nova_connect.check_stable_rescue(self._backend_args["conn"])

    def _resolve(self, parameters, template=None):
        """The connection, flavor and networks of a build, with the
        project's quotas checked for what it will hold (and, when these
        credentials may read placement, that some host can place the
        flavor), and its disk: the volume size of a volume-backed build
        (see _disk), None for an image-backed one."""
        from novaimagebuilder.machines import faults
        from novaimagebuilder.machines import nova_connect
        from novaimagebuilder.machines import quotas
        conn = self._connect(parameters)
        networks = nova_connect.find_networks(conn, parameters.get("network"))
        flavor = nova_connect.find_flavor(conn, parameters.get("flavor"))
        volume_size = _disk(conn, flavor, parameters, template)
        quotas.check(conn, quotas.for_build(
            flavor, ports=len(networks) or 1,
            security_group=not _security_groups(parameters),
            floating_ip=bool(parameters.get("request_floating_ip")),
            volume_gb=volume_size or 0), log=LOG)
        faults.check_placeable(conn, flavor, log=LOG)
        return dict(conn=conn, flavor=flavor, networks=networks,
                    ssh_network=nova_connect.find_ssh_network(
                        conn, parameters.get("ssh_network"), networks),
                    volume_size=volume_size)

    def _backend(self, build, parameters, resolved, **kwargs):
        from novaimagebuilder.machines import nova
        return nova.NovaBackend(
            resolved["conn"], build.identifier, resolved["flavor"],
            networks=resolved["networks"],
            ssh_network=resolved["ssh_network"],
            ssh_ip_version=parameters.get("ssh_ip_version"),
            ssh_host=_ssh_host(parameters),
            security_groups=_security_groups(parameters),
            ssh_sources=_ssh_sources(parameters), ssh_via=_ssh_via(parameters),
            floating_ip=parameters["request_floating_ip"],
            floating_ip_network=parameters.get("floating_ip_network"),
            config_drive=parameters["config_drive"],
            admin_password=parameters.get("admin_password"),
            snapshot_timeout=(parameters.get("snapshot_timeout", 600),
                              parameters.get("snapshot_timeout_per_gib",
                                             120)),
            volume_size=resolved["volume_size"],
            volume_type=parameters.get("volume_type"),
            cancel=build.cancel_event, log=LOG, **kwargs)

    def create_base_image(self, build, template, parameters):
        from novaimagebuilder.machines import nova_jeos_cache
        from novaimagebuilder.images import image_properties
        resolved = getattr(self, "_backend_args", None) or self._resolve(
            parameters, template)
        props = common.derived_properties(template, parameters)
        backend = self._backend(
            build, parameters, resolved,
            image_visibility=parameters["image_visibility"],
            image_name=parameters.get("image_name"),
            image_properties=dict(props, imgfac_template=template.name,
                                  imgfac_icicle=build.identifier),
            machine_properties=image_properties.machine_only(props))
        build.progress(1, "Building in the cloud (flavor %s)"
                       % resolved["flavor"].name)
        result = common.run_pipeline(
            build, backend, template, parameters, self.conf,
            nova_jeos_cache.JeosCache(resolved["conn"], log=LOG))
        build.set_property(images.GLANCE_ID_PROPERTY, result.image)
        build.set_property("glance_image_id", result.image)
        return result.image

    def create_target_image(self, build, target, base_image, parameters):
        """Apply the target content for ``target`` (if any) in a Nova server
        booted from the base image's Glance image; the snapshot of it is
        streamed to ``build.body_path`` (its format, Glance's
        ``disk_format``, recorded) for the cloud plugin and deleted."""
        from novaimagebuilder.images import formats
        from novaimagebuilder.images import glance
        from novaimagebuilder.images import download
        content = common.target_content(self, target, base_image)
        if content is None:
            return
        result, conn, backend = self._customize_base(build, base_image,
                                                     content)
        glance_id = result.image
        try:
            build.progress(19, "Downloading the customized image")
            image = download.download(glance.of(conn), glance_id,
                                      build.body_path,
                                      cancel=build.cancel_event)
            build.set_property("format",
                               formats.qemu_format(image["disk_format"]))
        finally:
            backend.discard(glance_id)

    def customize_in_cloud(self, build, target, base_image, finish,
                           describe, image_name, image_properties):
        """Make the target image in the cloud, its bytes never leaving it:
        a Nova server booted from the base image's Glance image gets the
        target content for ``target`` (if any) and runs ``finish``; its
        snapshot, private, named ``image_name`` with ``image_properties``,
        is the target image, given to ``describe(glance id, connection,
        ICICLE)`` before the guest goes (see
        :meth:`~novaimagebuilder.runner.Pipeline.customize_image`: a
        failure there deletes it)."""
        content = common.target_content(self, target, base_image) or \
            common.bare_template(base_image)
        self._customize_base(
            build, base_image, content, finish=finish, start=5, end=95,
            describe=describe, image_name=image_name,
            image_visibility="private", image_properties=image_properties)

    def _customize_base(self, build, base_image, content, start=5, end=19,
                        finish=None, describe=None, **image):
        """Boot the base image's Glance image with the base build's
        parameters, apply ``content``, capture and ``describe(image id,
        connection, ICICLE)`` the result: ``(the pipeline's Result,
        connection, backend)``."""
        stored = common.base_parameters(self, base_image)
        resolved = self._resolve(stored)
        conn = resolved["conn"]
        backend = self._backend(build, stored, resolved, **image)
        result = common.customize_for_target(
            build, backend, base_image.properties[images.GLANCE_ID_PROPERTY],
            content, stored, self.conf, start=start, end=end, finish=finish,
            describe=describe and (lambda image, icicle: describe(
                image, conn, icicle)))
        return result, conn, backend

    def jeos_cache(self, parameters):
        """The project's JEOS cache in Glance (when a cloud is configured)."""
        from novaimagebuilder.machines import nova_jeos_cache
        if not (parameters.get("cloud") or common.cloud_configured(self.conf)):
            return None
        return nova_jeos_cache.JeosCache(self._connect(parameters), log=LOG)

    def delete_image(self, image, parameters):
        """Delete the Glance image of a base image."""
        glance_id = image.properties.get(images.GLANCE_ID_PROPERTY)
        if not glance_id:
            return
        stored = dict(image.parameters)
        stored.update(parameters)
        conn = self._connect(stored)
        cloud.call("Glance could not delete image %s" % glance_id,
                   conn.image.delete_image, glance_id, ignore_missing=True)

    def sweep(self, protected, parameters, dry_run=False):
        """Remove the cloud resources tagged by builds that ``protected``
        does not keep, in dependency order (when a cloud is configured or
        the sweep acts for a caller: ``cloud_auth``)."""
        from novaimagebuilder.machines import nova_sweep
        if not (parameters.get("cloud") or self.cloud_auth is not None or
                common.cloud_configured(self.conf)):
            return []
        return nova_sweep.sweep_cloud(self._connect(parameters), protected,
                                      dry_run=dry_run, log=LOG)


def _disk(conn, flavor, parameters, template):
    """The volume size (GiB) of a volume-backed build (boot_from_volume,
    by default when the flavor's disk is 0), its block storage and volume
    type checked; None for an image-backed build, whose disk must fit the
    flavor's (Nova refuses a larger image: FlavorDiskSmallerThanImage)."""
    from novaimagebuilder import errors
    from novaimagebuilder.machines import nova_volumes
    on_volume = parameters.get("boot_from_volume")
    if on_volume is None:
        on_volume = not flavor.disk
    disk = int(parameters["disk_size"]) * nova_volumes.GIB \
        if parameters.get("disk_size") else \
        getattr(template, "disk_size", None)
    if on_volume:
        nova_volumes.check(conn, parameters.get("volume_type"))
        return nova_volumes.size_gib(parameters.get("volume_size"), disk,
                                     flavor)
    for name in ("volume_size", "volume_type"):
        if parameters.get(name):
            raise errors.BuildError(
                "%s is for builds on volumes: set boot_from_volume true or "
                "leave %s out" % (name, name))
    if disk and flavor.disk and disk > flavor.disk * nova_volumes.GIB:
        raise errors.BuildError(
            "disk_size %s GiB does not fit flavor %s, whose root disk is %d "
            "GiB (Nova refuses a larger image): choose a larger flavor, a "
            "smaller disk_size, or boot_from_volume" % (
                _gib(disk), flavor.name, flavor.disk))
    return None


def _gib(size):
    """Bytes as GiB, without a needless fraction."""
    return "%g" % round(size / 1024 ** 3, 2)


def _security_groups(parameters):
    """The security_groups parameter as a list of names."""
    return [g.strip() for g in (parameters.get("security_groups") or
                                "").split(",") if g.strip()]


def _ssh_host(parameters):
    """The ssh_host parameter checked (brackets dropped), or None."""
    from novaimagebuilder import errors
    from novaimagebuilder.guest import host_names
    if not parameters.get("ssh_host"):
        return None
    try:
        return host_names.check_host(parameters["ssh_host"])
    except ValueError as exc:
        raise errors.BuildError(str(exc)) from None


def _ssh_sources(parameters):
    """The networks of ssh_source_cidr (refused with security_groups, whose
    rules are the operator's), or [] for the default."""
    from novaimagebuilder import errors
    from novaimagebuilder.machines import ssh_source
    try:
        sources = ssh_source.parse(parameters.get("ssh_source_cidr"))
    except ValueError as exc:
        raise errors.BuildError(str(exc)) from None
    if sources and (parameters.get("security_groups") or "").strip():
        raise errors.BuildError(
            "ssh_source_cidr is for the build's own security group; with "
            "security_groups the groups' own rules apply: give one or the "
            "other")
    return sources


def _ssh_via(parameters):
    """The jump host's host, where SSH to the guest comes from; None."""
    from novaimagebuilder.guest import jump_host
    spec = parameters.get("ssh_jump_host")
    return jump_host.parse_jump_host(spec)[1] if spec else None

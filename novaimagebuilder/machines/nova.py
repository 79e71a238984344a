"""The Nova backend: the build's machines are Nova servers, its disks Glance
images.

Every server, image, keypair, security group and floating IP a build makes is
named ``imgfac-nova-<build id>-...`` and tagged with the build id (server
metadata, image properties, Neutron tags), so a sweep can find leftovers.
"""
import base64
import dataclasses
import hashlib
import logging
import os
import re
import socket
import subprocess
import tempfile
import time

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.machines import faults
from novaimagebuilder.images import glance
from novaimagebuilder.installer import initrd
from novaimagebuilder.installer import installer_screen
from novaimagebuilder.images import jeos
from novaimagebuilder.machines import nova_volumes
from novaimagebuilder import pipeline
from novaimagebuilder.installer import remaster
from novaimagebuilder import retries
from novaimagebuilder.guest import ssh_source
from novaimagebuilder import sweep
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

DIRECT_BOOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line")
#: Image properties of a JEOS cache entry (besides cloud.ROLE = "jeos-cache").
JEOS_KEY = "imgfac_jeos_key"
JEOS_NAME = "imgfac_jeos_os"
JEOS_STORED = "imgfac_jeos_stored"
#: What a capture's image must not keep of the image its server booted
#: from (Nova's snapshot and Cinder's upload both copy its properties): the
#: installer's direct boot (the JEOS would boot the installer again) and a
#: JEOS cache entry's keys.
NOT_INHERITED = DIRECT_BOOT_PROPERTIES + (JEOS_KEY, JEOS_NAME, JEOS_STORED)
#: Nova's power_state of a guest that is off (nova.compute.power_state).
SHUTDOWN = 4
#: Property of the ISO image that makes Nova's rescue a stable device rescue
#: attaching it as a CD-ROM; Nova picks the CD-ROM bus for the machine type
#: (ide on pc, sata on q35) as hw_rescue_bus is not set.
RESCUE_AS_CDROM = {"hw_rescue_device": "cdrom"}
#: A volume-backed server is rescued only by an image with both rescue
#: properties: the CD-ROM's bus is then named (the one Nova picks for the
#: "pc" machine type).
RESCUE_BUS = {"hw_rescue_bus": "ide"}
#: The first compute API microversion of the Nova release (Victoria) whose
#: libvirt driver has stable device rescue.
STABLE_RESCUE_MICROVERSION = (2, 87)
#: Seconds Nova may take to end a stopped server's last task (a stop's
#: powering-off) before a capture deletes it.
SETTLE_TIMEOUT = 300


def connect(cloud_name=None, region=None, interface=None, auth=None,
            timeout=None):
    """An authenticated openstacksdk Connection, from ``clouds.yaml`` / ``OS_*``
    (the entry ``cloud_name``)
    through openstacksdk's config loader, or from ``auth`` (a keystoneauth1
    auth plugin, e.g. an API caller's token); ``timeout``: seconds any one
    HTTP request may take (None: no limit). Its requests that may be
    repeated are retried on transient failures (:mod:`retries`). Failures
    are one-line BuildErrors."""
    import openstack
    try:
        if auth is not None:
            conn = openstack.connection.Connection(
                session=retries.Session(auth=auth, timeout=timeout),
                region_name=region,
                interface=interface)
        else:
            options = {"api_timeout": timeout} if timeout else {}
            config = openstack.config.OpenStackConfig(
                load_envvars=True, session_constructor=retries.Session)
            conn = openstack.connection.Connection(config=config.get_one(
                cloud=cloud_name, region_name=region, interface=interface,
                **options))
        conn.authorize()
    except Exception as exc:
        raise errors.BuildError(cloud.explain(exc)) from None
    return conn


def find_flavor(conn, flavor):
    """The flavor named or numbered ``flavor``, or a one-line error."""
    if not flavor:
        raise errors.BuildError("the flavor parameter is required "
                                "(--parameter flavor NAME_OR_ID)")
    found = cloud.call("looking up flavor %r" % flavor, conn.compute.find_flavor,
                       flavor)
    if found is None:
        names = sorted(f.name for f in conn.compute.flavors())
        raise errors.BuildError("Nova has no flavor %r (flavors: %s)"
                                % (flavor, ", ".join(names) or "none"))
    return found


def check_stable_rescue(conn):
    """ISO installs rescue a blank server with the ISO: a one-line error
    unless the cloud's Nova has stable device rescue."""
    from keystoneauth1 import discover
    data = cloud.call("asking Nova for its API versions",
                      conn.compute.get_endpoint_data)
    top = data.max_microversion if data is not None else None
    if top is None or tuple(top) < STABLE_RESCUE_MICROVERSION:
        raise errors.BuildError(
            "ISO installs need Nova's stable device rescue (compute API "
            "microversion %s, OpenStack Victoria or later); this cloud's "
            "compute API goes up to %s" % (
                discover.version_to_string(STABLE_RESCUE_MICROVERSION),
                discover.version_to_string(top) if top else
                "2.1 (no microversions)"))


def find_networks(conn, networks):
    """The networks of a comma-separated list of names or ids, in order (a
    NIC on each, in that order); without any, ``[find_network(conn,
    None)]`` or [] when Nova may choose."""
    names = [n.strip() for n in (networks or "").split(",") if n.strip()]
    if not names:
        found = find_network(conn, None)
        return [found] if found is not None else []
    found = [find_network(conn, name) for name in names]
    ids = [n.id for n in found]
    if len(set(ids)) != len(ids):
        raise errors.BuildError("network %r names a network twice" % networks)
    return found


def find_ssh_network(conn, ssh_network, networks):
    """The network of ``ssh_network`` (name or id), which must be one of the
    build servers' ``networks``; None without one."""
    if not ssh_network:
        return None
    wanted = find_network(conn, ssh_network)
    if wanted.id not in {n.id for n in networks}:
        raise errors.BuildError(
            "ssh_network %r is not one of the build servers' networks (%s); "
            "add it to the network parameter (comma-separated)" % (
                ssh_network, ", ".join(n.name for n in networks) or
                "the one Nova chooses"))
    return wanted


def find_network(conn, network):
    """The named network; without a name, the project's only network (None
    lets Nova choose when there is none)."""
    if network:
        found = cloud.call("looking up network %r" % network,
                           conn.network.find_network, network)
        if found is None:
            raise errors.BuildError("Neutron has no network %r" % network)
        return found
    candidates = [n for n in cloud.call("listing networks", conn.network.networks)
                  if not n.is_router_external]
    own = [n for n in candidates if not n.is_shared] or candidates
    if len(own) > 1:
        raise errors.BuildError(
            "several networks could be used (%s); choose one with "
            "--parameter network NAME" % ", ".join(sorted(n.name for n in own)))
    return own[0] if own else None


@dataclasses.dataclass
class Server:
    """A server this build made and what belongs only to it."""

    id: str
    name: str
    #: installer or guest: what else belongs to it follows (see _parts).
    role: str
    #: Where SSH reaches it (the guest only; see choose_address).
    address: str | None = None
    #: Booted from the install ISO by a rescue (undone before a capture).
    rescued: bool = False
    #: The openstacksdk Server as it was when it became ACTIVE.
    found: object = None
    #: Its root volume, on a volume-backed build.
    volume: str | None = None

    def __str__(self):
        return "server %s (%s)" % (self.name, self.id)


def open_ssh(conn, group, sources):
    """Let SSH in to a security group: TCP 22 from each of ``sources``
    (ipaddress networks)."""
    for source in sources:
        cloud.call("opening SSH in the security group",
                   conn.network.create_security_group_rule,
                   security_group_id=group.id, direction="ingress",
                   protocol="tcp", port_range_min=22, port_range_max=22,
                   remote_ip_prefix=str(source),
                   ethertype="IPv%d" % source.version)


class NovaBackend(pipeline.Backend):
    name = "nova"

    def __init__(self, conn, build_id, flavor, networks=(),
                 security_groups=(), floating_ip=False,
                 floating_ip_network=None, config_drive=True,
                 image_visibility="private", image_name=None,
                 image_properties=None, admin_password=None, cancel=None,
                 log=None, ssh_host=None, ssh_network=None,
                 ssh_ip_version=None, ssh_sources=(), ssh_via=None,
                 snapshot_timeout=(600, waiter.SECONDS_PER_GIB),
                 volume_size=None, volume_type=None, machine_properties=None):
        self.conn = conn
        #: A snapshot may take [0] seconds plus [1] per GiB of the disk.
        self.snapshot_timeout = snapshot_timeout
        self.build_id = build_id
        self.flavor = flavor
        #: A NIC on each, in order; none: Nova chooses.
        self.networks = list(networks or ())
        self.ssh_host = ssh_host
        self.ssh_network = ssh_network
        self.ssh_ip_version = ssh_ip_version
        self.security_groups = list(security_groups or ())
        #: Where the build's own group lets SSH in from (ipaddress networks;
        #: none: ssh_source.default_sources), and the jump host SSH goes
        #: through.
        self.ssh_sources = list(ssh_sources or ())
        self.ssh_via = ssh_via
        self._ssh_from = ""  # what the group's SSH rule admits, for messages
        self.floating_ip = floating_ip
        self.floating_ip_network = floating_ip_network
        self.config_drive = config_drive
        self.image_visibility = image_visibility
        self.image_name = image_name or cloud.NAME_PREFIX + build_id
        self.image_properties = dict(image_properties or {})
        #: What the installer disk carries so that Nova gives the servers
        #: the build's machine (firmware, CPU traits); its snapshots, the
        #: JEOS and the image, keep it.
        self.machine_properties = dict(machine_properties or {})
        self.admin_password = admin_password
        self.cancel = cancel
        self.log = log or LOG
        self.owner = "%s:%d" % (socket.gethostname(), os.getpid())
        #: Volume-backed (given a volume size in GiB): the servers boot from
        #: the build's own Cinder volumes (see nova_volumes).
        self.volumes = volume_size and nova_volumes.Volumes(
            self, volume_size, volume_type)

    def jeos_scope(self):
        """The flavor shapes the install (memory: swap; disk: partitions)."""
        scope = {"backend": self.name, "flavor": {
            "id": self.flavor.id, "ram": self.flavor.ram,
            "disk": self.flavor.disk, "vcpus": self.flavor.vcpus}}
        if self.volumes:
            scope["volume_size"] = self.volumes.size
        if self.machine_properties:
            scope["machine"] = self.machine_properties
        return scope

    def _rescue_properties(self):
        """What makes the ISO image rescue the installer as a CD-ROM."""
        return dict(RESCUE_AS_CDROM, **RESCUE_BUS) if self.volumes else \
            RESCUE_AS_CDROM

    # -- media -----------------------------------------------------------------

    def prepare_media(self, media):
        """Upload the kernel and ramdisk to Glance once (reused by sha256).
        An ISO is not uploaded as it is: the installer boots a remastered
        copy (see boot_installer)."""
        formats = {"kernel": ("aki", "aki"), "ramdisk": ("ari", "ari")}
        handle = {role: self._media_image(role, media.sha256[role],
                                          lambda p=path: p, *formats[role],
                                          path=path)
                  for role, path in media.files.items() if role != "iso"}
        handle["files"], handle["sha256"] = media.files, media.sha256
        return handle

    def _media_image(self, role, digest, make, disk_format,
                     container_format, path=None):
        """The shared Glance image of the media ``digest`` names: an active
        one of this project (asked of Glance by property, owner and status)
        whose bytes hash as ``path`` does (when given), or one uploaded from
        the file ``make()`` writes."""
        properties = self._rescue_properties() if role == "iso" else {}
        client = glance.of(self.conn)
        found = glance.call("looking up the %s in Glance" % role, lambda: list(
            client.images.list(filters={
                cloud.MEDIA_SHA256: digest, "status": "active",
                "owner": self.conn.current_project_id})))
        for image in found:
            if path and not glance.holds(image, path):
                self.log.warning("Not reusing Glance image %s for the %s: "
                                 "its %s is not the file's", image["id"],
                                 role, image.get("os_hash_algo") or "hash")
                continue
            self.log.info("Reusing Glance image %s for the %s", image["id"],
                          role)
            if any(image.get(k) != v for k, v in properties.items()):
                cloud.call("setting the rescue properties of image %s"
                           % image["id"], self.conn.image.update_image,
                           image["id"], **properties)
            return image["id"]
        path = make()
        name = "imgfac-nova-media-%s-%s" % (role, digest[:12])
        self.log.info("Uploading the %s to Glance as %s", role, name)
        return self._upload(path, name, disk_format, container_format,
                            "media", dict(properties, **{cloud.MEDIA_SHA256: digest}))

    def _build_image(self, role, path, disk_format, container_format,
                     **properties):
        """Upload ``path`` as an image of this build alone (the installer's
        disk, ramdisk or ISO), or adopt the one an earlier run of the build
        uploaded; it goes with the installer (see _parts)."""
        name = self._server_name(role)
        return self._adopted_image(name) or self._upload(
            path, name, disk_format, container_format, role, properties)

    def _own_images(self, name=None):
        """This build's Glance images (named ``name``), as Glance lists
        them."""
        filters = {cloud.BUILD_TAG: self.build_id}
        if name:
            filters["name"] = name
        client = glance.of(self.conn)
        return glance.call("looking up this build's images in Glance",
                           lambda: list(client.images.list(filters=filters)))

    def _adopted_image(self, name):
        """The id of this build's active image ``name`` that an earlier run
        of the build uploaded (one half uploaded is deleted), or None."""
        for found in self._own_images(name):
            if found["status"] == "active":
                self.log.info("Adopting image %s (%s), uploaded by an "
                              "earlier run of this build", name, found["id"])
                return found["id"]
            self.log.info("Deleting image %s (%s, %s), left half uploaded by "
                          "an earlier run of this build", name, found["id"],
                          found["status"])
            self.discard(found["id"])
        return None

    def _upload(self, path, name, disk_format, container_format, role,
                properties):
        """The id of the Glance image ``name`` uploaded from ``path``
        (streamed and hashed by :func:`glance.upload`); a failed upload
        leaves no image."""
        return glance.upload(
            glance.of(self.conn), path, name, disk_format, container_format,
            method="upload", cancel=self.cancel,
            timeout=waiter.for_size(os.path.getsize(path), 600), role=role,
            properties=dict(properties, **{cloud.BUILD_TAG: self.build_id,
                                           cloud.OWNER_TAG: self.owner})).id

    # -- servers ---------------------------------------------------------------

    def _tags(self):
        return [cloud.BUILD_TAG + "=" + self.build_id,
                cloud.OWNER_TAG + "=" + self.owner]

    def _server_name(self, role):
        return "%s%s-%s" % (cloud.NAME_PREFIX, self.build_id, role)

    def _boot(self, role, image_id, user_data=None, key_name=None,
              security_groups=None):
        attrs = dict(name=self._server_name(role), image_id=image_id,
                     flavor_id=self.flavor.id,
                     metadata={cloud.BUILD_TAG: self.build_id,
                               cloud.OWNER_TAG: self.owner},
                     config_drive=self.config_drive)
        if self.networks:
            attrs["networks"] = [{"uuid": n.id} for n in self.networks]
        if user_data:
            attrs["user_data"] = base64.b64encode(
                user_data.encode()).decode()
        if key_name:
            attrs["key_name"] = key_name
        if security_groups:
            attrs["security_groups"] = [{"name": g} for g in security_groups]
        if self.admin_password:
            attrs["admin_password"] = self.admin_password
        created = self._server_named(attrs["name"])
        if created is not None and (role != "installer" or
                                    created.status == "ERROR"):
            self.log.info("Deleting server %s (%s), left by an earlier run "
                          "of this build", created.name, created.id)
            self._delete_server(created.id)
            created = None
        volume = None
        if self.volumes:
            attrs["block_device_mapping"], volume = self.volumes.root(
                role, attrs.pop("image_id"),
                created.id if created is not None else None)
        if created is None:
            created = retries.send_once(
                "Nova refused to boot the %s" % role,
                lambda: self.conn.compute.create_server(**attrs),
                lambda: self._server_named(attrs["name"]),
                cancel=self.cancel, log=self.log)
            if volume:
                self.volumes.note_server(volume, created.id)
        else:
            self.log.info("Adopting server %s (%s), booted by an earlier run "
                          "of this build", created.name, created.id)
        server = Server(created.id, created.name, role,
                        rescued=created.vm_state == "rescued", volume=volume)
        found = waiter.wait_for(
            "waiting for %s to become ACTIVE" % server,
            lambda: self.conn.compute.get_server(server.id),
            lambda s: s.status == "ACTIVE" or (
                server.rescued and s.status == "RESCUE"),
            timeout=600, cancel=self.cancel,
            failed=lambda s: faults.server_error(s, self.conn)
            if s.status == "ERROR" else None)
        server.found = found
        return server

    def _server_named(self, name):
        """This build's server ``name`` (None: there is none)."""
        for found in self.conn.compute.servers(name="^%s$" % re.escape(name)):
            if (found.metadata or {}).get(cloud.BUILD_TAG) == self.build_id:
                return found
        return None

    def _act(self, what, server, send, task_state, vm_state):
        """Send a server action once (see retries.send_once): it was done
        when the server is in ``task_state`` or ``vm_state``."""
        def made():
            found = self.conn.compute.get_server(server.id)
            return True if found.task_state == task_state or \
                found.vm_state == vm_state else None
        retries.send_once(what, send, made, cancel=self.cancel, log=self.log)

    def _delete_server(self, server_id):
        self.conn.compute.delete_server(server_id, ignore_missing=True)
        _wait_server_gone(self.conn, server_id)

    def boot_installer(self, media, script, kind, cmdline, disk_size):
        """URL installs boot a blank disk image whose properties make Nova
        boot the installer kernel directly. ISO installs boot a blank disk
        image, then rescue the server with a copy of the ISO whose boot
        loader boots the installer with ``cmdline``: Nova's stable device
        rescue keeps the blank root disk and the config drive and boots the
        ISO as an extra CD-ROM (booting the ISO image itself would make the
        CD-ROM the root device that snapshots capture). An installer that
        reads its script from its initrd gets it there: in a private
        ramdisk image, or in a private copy of the ISO. When it fails, what
        it made is found by this build's tags and removed (see _remove)."""
        server = None
        try:
            if "iso" in media["files"]:
                iso = self._installer_iso(media, script, kind, cmdline)
                disk = self._installer_disk(disk_size)
                server = self._boot("installer", disk, user_data=script)
                self._rescue(server, iso)
                return server
            ramdisk = media["ramdisk"]
            if kind in pipeline.INITRD_SCRIPTS:
                ramdisk = self._ramdisk_with_script(
                    media["files"]["ramdisk"], script,
                    pipeline.INITRD_SCRIPTS[kind])
            disk = self._installer_disk(disk_size, kernel_id=media["kernel"],
                                        ramdisk_id=ramdisk,
                                        os_command_line=cmdline)
            return self._boot("installer", disk, user_data=script)
        except BaseException:
            self._remove("installer", server and server.id)
            raise

    def _rescue(self, server, image_id):
        """Boot ``server`` from the ISO ``image_id`` (a stable device
        rescue) and wait until Nova says it is rescued."""
        if server.rescued:  # adopted, rescued already
            return
        self.log.info("Rescuing %s with the install ISO %s", server, image_id)
        self._act("Nova could not rescue %s with the install ISO" % server,
                  server, lambda: self.conn.compute.rescue_server(
                      server.id, image=image_id), "rescuing", "rescued")
        server.rescued = True
        self._wait_state(server, "rescued", "RESCUE")

    def _unrescue(self, server):
        """Leave rescue: Nova boots the server from its root disk, so it is
        stopped again before it is captured."""
        self.log.info("Unrescuing %s", server)
        self._act("Nova could not unrescue %s" % server, server,
                  lambda: self.conn.compute.unrescue_server(server.id),
                  "unrescuing", "active")
        self._wait_state(server, "active", "ACTIVE")
        server.rescued = False
        self.power_off(server)

    def _wait_state(self, server, vm_state, status):
        waiter.wait_for(
            "waiting for %s to become %s" % (server, status),
            lambda: self.conn.compute.get_server(server.id),
            lambda s: s.vm_state == vm_state and s.task_state is None,
            timeout=600, cancel=self.cancel,
            failed=lambda s: faults.server_error(s, self.conn)
            if s.status == "ERROR" else None)

    def _ramdisk_with_script(self, ramdisk, script, name):
        """A private Glance ramdisk for this build: the installer's initrd
        with the install script added as ``name``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = initrd.with_files(ramdisk, {name: script.encode()},
                                     os.path.join(tmp, "initrd"))
            return self._build_image("installer-ramdisk", path, "ari", "ari")

    def _installer_iso(self, media, script, kind, cmdline):
        """The Glance ISO the installer is rescued with: the install ISO
        remastered to boot its installer at once with ``cmdline`` (see
        :mod:`remaster`). With the install script in its initrd the copy is
        private to the build; without, it is shared media, reused by the
        ISO's digest and ``cmdline``."""
        iso = media["files"]["iso"]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "installer.iso")
            if kind not in pipeline.INITRD_SCRIPTS:
                digest = hashlib.sha256(("%s %s%s" % (
                    media["sha256"]["iso"], cmdline, " volume" if
                    self.volumes else "")).encode()).hexdigest()
                return self._media_image(
                    "iso", digest,
                    lambda: self._remaster(iso, {}, cmdline, out), "iso",
                    "bare")
            path = self._remaster(iso, {pipeline.INITRD_SCRIPTS[kind]:
                                        script.encode()}, cmdline, out)
            return self._build_image("installer-iso", path, "iso", "bare",
                                     **self._rescue_properties())

    def _remaster(self, iso, files, cmdline, out):
        self.log.info("Remastering the install ISO: its boot loader boots "
                      "the installer at once with the build's kernel "
                      "arguments%s", ", its initrd holds the install script"
                      if files else "")
        return remaster.with_files(iso, files, cmdline, out)

    def _installer_disk(self, disk_size, **boot_properties):
        """A blank disk image for the installer to install onto, with the
        machine properties; the ``boot_properties`` (kernel_id, ramdisk_id,
        os_command_line) make Nova boot the installer kernel directly."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "blank.qcow2")
            size = self.volumes.size * 1024 ** 3 if self.volumes else \
                disk_size or self.flavor.disk * 1024 ** 3 or 10 * 1024 ** 3
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path,
                            str(size)], check=True)
            return self._build_image(
                "installer-disk", path, "qcow2", "bare",
                **dict(self.machine_properties, **boot_properties))

    def wait_powered_off(self, machine, what, timeout, inactivity=None,
                         screen=None):
        """Poll the server's status (cheap: the API's database) every
        poll, its console (an RPC to nova-compute) every CONSOLE_EVERY
        seconds: its tail is the activity, or what ``screen`` reads."""
        console = {"read": None, "activity": None}

        def poll():
            server = self.conn.compute.get_server(machine.id)
            if _powered_off(server):
                return server, None  # done: no console read to delay it
            now = time.monotonic()
            if console["read"] is None or \
                    now - console["read"] >= CONSOLE_EVERY:
                console["read"] = now
                if screen is None:
                    console["activity"] = self.console(machine,
                                                       CONSOLE_TAIL)
                else:
                    screen.update(self.console(
                        machine, installer_screen.CONSOLE_LINES))
                    console["activity"] = screen.activity
            return server, console["activity"]

        def failed(state):
            if state[0].status == "ERROR":
                return faults.server_error(state[0], self.conn)
            return screen and screen.stuck()

        waiter.wait_for(
            what, poll, lambda state: _powered_off(state[0]),
            failed=failed,
            activity=lambda state: state[1], inactivity=inactivity,
            timeout=timeout, cancel=self.cancel)

    def power_off(self, machine):
        self._act("stopping %s" % machine, machine,
                  lambda: self.conn.compute.stop_server(machine.id),
                  "powering-off", "stopped")
        self.wait_powered_off(machine, "waiting for %s to stop" % machine, 300)

    def console(self, machine, lines=30):
        try:
            output = self.conn.compute.get_server_console_output(
                machine.id, length=lines)
        except Exception as exc:
            return "(console unavailable: %s)" % cloud.explain(exc)
        return output.get("output") or ""

    def delete(self, machine):
        left = self._remove(machine.role, machine.id, machine.volume)
        if left:
            raise errors.BuildError("could not delete: %s" % "; ".join(left))

    def _remove(self, role, server_id=None, volume=None):
        """Remove this build's machine of ``role``: its server
        (``server_id``, else the one named for the role, if any: a boot
        whose answer was lost made it), then what belongs only to it, all
        found by this build's tags (see _parts), so it does not matter which
        process made them. Returns what could not be removed, as lines."""
        left = []

        def remove(description, action):
            try:
                action()
                self.log.info("Removed %s", description)
            except Exception as exc:
                self.log.warning("Could not remove %s: %s", description, exc)
                left.append("%s: %s" % (description, cloud.explain(exc)))
        if server_id is None:
            found = self._server_named(self._server_name(role))
            server_id = found and found.id
        if server_id:
            remove("server %s" % server_id,
                   lambda: self._delete_server(server_id))
        for kind, parts in self._parts(role, volume):
            try:
                found = parts()
            except Exception as exc:
                self.log.warning("Could not look up the %s of the %s: %s",
                                 kind, role, exc)
                left.append("the %s of the %s: %s" % (kind, role,
                                                      cloud.explain(exc)))
                continue
            for description, action in found:
                remove(description, action)
        return left

    def _parts(self, role, volume=None):
        """What belongs only to this build's machine of ``role`` besides its
        server: ``[(kind, lookup)]``, each lookup giving ``[(description,
        removal)]`` as found by the build's tags and names. The volumes come
        first (on Ceph a volume made from an image holds that image until
        the volume is gone): the root volume (``volume`` too, when the
        server is gone); then a guest's floating IPs, security group and
        keypair, or an installer's private images (disk, ramdisk, ISO)."""
        def volumes():
            name = self.volumes.name(role)
            return [("volume %s (%s)" % (found.name, found.id),
                     lambda v=found.id: self.volumes.remove(v))
                    for found in self.volumes.own()
                    if found.name == name or found.id == volume]
        lookups = [("volumes", volumes)] if self.volumes else []
        if role == "guest":
            return lookups + [("network resources and keypair",
                               self._guest_parts)]
        return lookups + [("private images", self._installer_parts)]

    def _guest_parts(self):
        """The guest's floating IPs, security group and keypair (see
        _parts)."""
        parts = [("floating IP %s" % ip.floating_ip_address,
                  lambda i=ip: self.conn.network.delete_ip(
                      i.id, ignore_missing=True))
                 for ip in self.conn.network.ips(
                     description=self._fip_description())]
        parts += [("security group %s" % group.name,
                   lambda g=group: self.conn.network.delete_security_group(
                       g.id, ignore_missing=True))
                  for group in self._own("security_groups",
                                         self._server_name("ssh"))]
        key = self._server_name("key")
        return parts + [("keypair %s" % key, lambda: self.conn.compute.
                         delete_keypair(key, ignore_missing=True))]

    def _installer_parts(self):
        """The installer's private images (see _parts)."""
        private = {self._server_name(kind) for kind in (
            "installer-disk", "installer-ramdisk", "installer-iso")}
        return [("image %s" % image["id"],
                 lambda i=image["id"]: self.discard(i))
                for image in self._own_images() if image["name"] in private]

    # -- images ----------------------------------------------------------------

    def capture(self, machine, role):
        if machine.rescued:  # Nova snapshots no rescued server
            self._unrescue(machine)
        name = (self._server_name("jeos") if role == "jeos"
                else self.image_name)
        metadata = {cloud.BUILD_TAG: self.build_id, cloud.ROLE: role}
        if role == "jeos":
            metadata[cloud.OWNER_TAG] = self.owner
        image = self._image_with(name, metadata)
        limit = waiter.for_size(self._disk_bytes(), *self.snapshot_timeout)
        if machine.volume and (image is None or
                               image.status in ("killed", "deleted")):
            # Nova deletes a server in any task; the upload must not begin
            # before the stop's task is over.
            self._settled(machine, SETTLE_TIMEOUT)
            image = self.conn.image.get_image(
                self.volumes.upload(machine, name, metadata, NOT_INHERITED))
        elif image is None or image.status in ("killed", "deleted"):
            image = retries.send_once(
                "Nova could not snapshot %s" % machine,
                lambda: self.conn.compute.create_server_image(
                    machine.id, name, metadata=metadata),
                lambda: self._image_with(name, metadata),
                cancel=self.cancel, log=self.log)
        else:
            self.log.info("Adopting the %s snapshot %s, started by an "
                          "earlier run of this build", role, image.id)
        try:
            # Cinder says when its upload is done.
            sizes = self.volumes.release(machine) if machine.volume else None
            image = waiter.wait_for(
                "waiting for the %s snapshot %s to become active"
                % (role, image.id),
                lambda: self.conn.image.get_image(image.id),
                lambda i: i.status == "active",
                timeout=limit, cancel=self.cancel,
                failed=lambda i: "Glance says the image is %s" % i.status
                if i.status in ("killed", "deleted") else None)
            if not machine.volume:
                # Glance has the bytes before nova-compute ends the
                # snapshot's task (image_uploading) on the server.
                self._settled(machine, limit)
            if sizes:
                retries.send_once(
                    "setting the minimum sizes of image %s" % image.id,
                    lambda: self.conn.image.update_image(image.id, **sizes),
                    lambda: self._image_with(name, sizes, image.id),
                    cancel=self.cancel, log=self.log)
            self._drop_inherited(image.id)
            if role == "image":
                wanted = dict(self.image_properties,
                              visibility=self.image_visibility,
                              min_disk=self._min_disk(image),
                              min_ram=self.flavor.ram)
                retries.send_once(
                    "setting the image properties",
                    lambda: self.conn.image.update_image(image.id, **wanted),
                    lambda: self._image_with(name, wanted, image.id),
                    cancel=self.cancel, log=self.log)
        except BaseException:
            self.discard(image.id)
            raise
        return image.id

    def _settled(self, machine, timeout):
        """Wait until Nova has no task on ``machine``'s server (Nova refuses
        the next action on a server until its task_state is cleared); a
        server that is gone has none."""
        from openstack import exceptions as sdk

        def poll():
            try:
                return self.conn.compute.get_server(machine.id)
            except sdk.NotFoundException:
                return None

        waiter.wait_for(
            "waiting for Nova to finish its task on %s" % machine, poll,
            lambda server: server is None or server.task_state is None,
            timeout=timeout, cancel=self.cancel,
            failed=lambda server: faults.server_error(server, self.conn)
            if server.status == "ERROR" else None)

    def _min_disk(self, image):
        """GiB a server of ``image`` needs: its virtual size (Glance's,
        else the build servers' disk), rounded up."""
        size = getattr(image, "virtual_size", None) or self._disk_bytes()
        return -(-size // 1024 ** 3)

    def capture_limit(self):
        size = self._disk_bytes()
        return waiter.describe(waiter.for_size(size, *self.snapshot_timeout),
                               size)

    def _disk_bytes(self):
        """The size of the build servers' root disk (their volume's; else
        the flavor's; 10 GiB for a flavor without one, as the installer
        disk)."""
        return (self.volumes.size if self.volumes else
                self.flavor.disk or 10) * 1024 ** 3

    def _image_with(self, name, properties, image_id=None):
        """The image ``name`` (or ``image_id``) whose properties include
        ``properties`` (None: there is none)."""
        images = [self.conn.image.get_image(image_id)] if image_id else \
            self.conn.image.images(name=name)
        for image in images:
            found = dict(image.to_dict(), **(image.properties or {}))
            if all(str(found.get(k)) == str(v)
                   for k, v in properties.items()):
                return image
        return None

    def _drop_inherited(self, image_id):
        """Remove what the image inherited and must not keep
        (NOT_INHERITED)."""
        image = self.conn.image.get_image(image_id)
        patch = [{"op": "remove", "path": "/" + name}
                 for name in NOT_INHERITED
                 if name in (image.properties or {})
                 or getattr(image, name, None)]
        if patch:
            retries.send_once(
                "removing inherited properties from image %s" % image_id,
                lambda: patch_image(self.conn, image_id, patch),
                lambda: self._drop_inherited(image_id),
                cancel=self.cancel, log=self.log)
        return True

    def discard(self, captured):
        from openstack import exceptions as sdk
        try:
            self.conn.image.delete_image(captured, ignore_missing=True)
        except sdk.HttpException as exc:
            raise errors.BuildError("deleting image %s: %s"
                                    % (captured, cloud.explain(exc))) from None

    # -- the customization guest -----------------------------------------------

    def boot_guest(self, jeos, user, public_key, user_data=None):
        self._clear_guest()
        try:
            name = self._server_name("key")
            self._create_keypair(name, public_key)
            group = None if self.security_groups else self._ssh_group()
            server = self._boot("guest", jeos, key_name=name,
                                security_groups=self.security_groups or
                                [group.name], user_data=user_data)
            wanted = dict(network=self.ssh_network and self.ssh_network.name,
                          ip_version=self.ssh_ip_version)
            floating = None
            if not self.ssh_host:
                # An ssh_ip_version the server has no address of fails as
                # soon as it is ACTIVE, before a floating IP is made.
                choose_address(server.found, **wanted)
                if self.floating_ip:
                    floating = self._floating_ip(server)
            server.address = choose_address(
                server.found, ssh_host=self.ssh_host, floating=floating,
                **wanted)
            if group is not None:
                self._open_ssh(group, server)
            self.log.info("Reaching %s by SSH at %s", server, server.address)
            return server
        except BaseException:
            self._remove("guest")
            raise

    def _clear_guest(self):
        """Remove the guest an earlier run of this build left (its SSH key
        died with that run's process) and its keypair, security group,
        floating IPs and volume."""
        left = self._remove("guest")
        if left:
            raise errors.BuildError("could not remove what an earlier run "
                                    "left: %s" % "; ".join(left))

    def _own(self, kind, name):
        """This build's Neutron resources of ``kind`` named ``name``."""
        return [found for found in getattr(self.conn.network, kind)(
            name=name) if cloud.BUILD_TAG + "=" + self.build_id in (
                found.tags or ())]

    def _fip_description(self):
        return "imgfac-nova build %s" % self.build_id

    def adopt(self, identifier):
        """The server ``identifier`` (installer or guest) an earlier process
        of this build booted, with what belongs only to it (a server in
        ERROR too: waiting for it fails with Nova's fault)."""
        from openstack import exceptions as sdk
        try:
            found = self.conn.compute.get_server(identifier)
        except sdk.NotFoundException:
            found = None
        except sdk.HttpException as exc:
            raise errors.BuildError("looking up server %s: %s"
                                    % (identifier, cloud.explain(exc))) from None
        disk = self.volumes and cloud.call(
            "looking up the volume of server %s" % identifier,
            self.volumes.of_server, identifier)
        volume = disk and disk.id
        if found is not None and \
                (found.metadata or {}).get(cloud.BUILD_TAG) != self.build_id:
            raise errors.BuildError("server %s is not this build's"
                                    % identifier)
        deleting = found is None or found.task_state == "deleting" or \
            found.status in ("DELETED", "SOFT_DELETED")
        if deleting and volume:
            # A capture deletes the server to upload its volume.
            _wait_server_gone(self.conn, identifier)
            return self._volume_left(identifier, disk)
        if found is None:
            raise errors.Gone("server %s is gone" % identifier)
        if deleting:
            raise errors.Gone("server %s is being deleted" % identifier)
        role = "guest" if found.name == self._server_name("guest") else \
            "installer"
        server = Server(found.id, found.name, role, found=found,
                        rescued=found.vm_state == "rescued", volume=volume)
        self.log.info("Going on with %s, booted by an earlier run of this "
                      "build (%s)", server, found.status)
        return server

    def _volume_left(self, server_id, volume):
        """The server ``server_id`` that a capture deleted to upload its
        ``volume`` (openstacksdk's), which is left: its capture goes on with
        the volume."""
        self.log.info("Going on with volume %s, the disk of server %s that "
                      "an earlier run of this build deleted to upload it",
                      volume.id, server_id)
        role = "guest" if volume.name == self.volumes.name("guest") else \
            "installer"
        return Server(server_id, "(deleted)", role, volume=volume.id)

    def _create_keypair(self, name, public_key):
        """The build's keypair (sent once: see retries.send_once)."""
        from openstack import exceptions as sdk

        def made():
            try:
                return self.conn.compute.get_keypair(name)
            except sdk.NotFoundException:
                return None
        return retries.send_once(
            "creating the keypair", lambda: self.conn.compute.create_keypair(
                name=name, public_key=public_key), made, cancel=self.cancel,
            log=self.log)

    def _ssh_group(self):
        name = self._server_name("ssh")
        group = cloud.call("creating the security group",
                           self.conn.network.create_security_group, name=name,
                           description="SSH for imgfac-nova build %s"
                           % self.build_id)
        cloud.call("tagging the security group", self.conn.network.set_tags,
                   group, self._tags())
        return group

    def _open_ssh(self, group, server):
        """Open SSH in the build's group from where the build connects
        (the rule follows the address, so the server exists by now)."""
        sources = self.ssh_sources or cloud.call(
            "looking up the floating IPs of the address SSH comes from",
            ssh_source.default_sources, self.conn, server.address,
            self.ssh_via)
        self._ssh_from = ", ".join(str(s) for s in sources)
        self.log.info("Security group %s lets SSH in from %s%s", group.name,
                      self._ssh_from, "" if self.ssh_sources else
                      " (where this build connects from; ssh_source_cidr "
                      "sets it)")
        open_ssh(self.conn, group, sources)

    def ssh_limits(self, machine):
        if not self._ssh_from:
            return ""
        return ("the build's security group lets SSH in from %s only; when "
                "the cloud sees this host at another address (a NAT), give "
                "ssh_source_cidr" % self._ssh_from)

    def _floating_ip(self, server):
        network = self._external_network()
        ports = list(self.conn.network.ports(device_id=server.id))
        if self.ssh_network is not None:  # on the port of that network
            ports = [p for p in ports if p.network_id == self.ssh_network.id]
        elif self.networks:  # else on the first NIC's
            ports.sort(key=lambda p: p.network_id != self.networks[0].id)
        if not ports:
            raise errors.BuildError("%s has no port to attach a floating IP "
                                    "to" % server)
        description = self._fip_description()
        ip = retries.send_once(
            "creating a floating IP on %s" % network.name,
            lambda: self.conn.network.create_ip(
                floating_network_id=network.id, port_id=ports[0].id,
                description=description),
            lambda: next(iter(self.conn.network.ips(
                port_id=ports[0].id, description=description)), None),
            cancel=self.cancel, log=self.log)
        cloud.call("tagging the floating IP", self.conn.network.set_tags, ip,
                   self._tags())
        return ip.floating_ip_address

    def _external_network(self):
        if self.floating_ip_network:
            network = cloud.call("looking up network %r"
                                 % self.floating_ip_network,
                                 self.conn.network.find_network,
                                 self.floating_ip_network)
            if network is None:
                raise errors.BuildError("Neutron has no network %r"
                                        % self.floating_ip_network)
            return network
        external = [n for n in cloud.call("listing networks",
                                          self.conn.network.networks,
                                          is_router_external=True)]
        if len(external) != 1:
            raise errors.BuildError(
                "request_floating_ip needs floating_ip_network: %s external "
                "networks found" % len(external))
        return external[0]

    def ssh_address(self, machine):
        return machine.address, 22


def patch_image(conn, image_id, patch):
    """Apply a JSON patch to a Glance image; its answer (HTTP errors
    raised)."""
    from openstack import exceptions as sdk
    answer = conn.image.patch(
        "/images/%s" % image_id, json=patch,
        headers={"Content-Type": "application/"
                 "openstack-images-v2.1-json-patch"})
    sdk.raise_from_response(answer)
    return answer


def _powered_off(server):
    """Stopped, or rescued with the guest powered off (Nova leaves a rescued
    server in RESCUE when its guest powers off; only its power_state says
    so)."""
    if server.status == "SHUTOFF":
        return True
    return (server.vm_state == "rescued" and server.task_state is None
            and server.power_state == SHUTDOWN)


def choose_address(server, ssh_host=None, network=None, ip_version=None,
                   floating=None):
    """The address SSH reaches ``server`` (an openstacksdk Server) at, by
    precedence: ``ssh_host``; then ``floating`` (the build's floating IP);
    then the fixed address of ``ip_version`` (4 or 6; default 4) on the
    ``network`` named (its key in ``server.addresses``); without a network,
    the server's accessIPv4/accessIPv6 of that version, else its first
    fixed address of that version. A BuildError names the addresses the
    server has when none fits."""
    if ssh_host:
        return ssh_host
    if floating:
        return floating
    version = int(ip_version or 4)
    addresses = server.addresses or {}
    if network is not None:
        candidates = [a for a in addresses.get(network, ())
                      if a.get("version") == version
                      and a.get("OS-EXT-IPS:type", "fixed") == "fixed"]
    else:
        access = server.access_ipv4 if version == 4 else server.access_ipv6
        candidates = [{"addr": access}] if access else [
            a for found in addresses.values() for a in found
            if a.get("version") == version
            and a.get("OS-EXT-IPS:type", "fixed") == "fixed"]
    if candidates:
        return candidates[0]["addr"]
    where = " on network %s" % network if network is not None else ""
    raise errors.BuildError(
        "server %s has no IPv%d address%s to reach it by SSH; its addresses: "
        "%s" % (server.name, version, where, _listed(server)))


def _listed(server):
    """The server's addresses, "net: 10.0.0.5, 2001:db8::5; ..."."""
    shown = ["%s: %s" % (name, ", ".join(a["addr"] for a in found))
             for name, found in sorted((server.addresses or {}).items())]
    for label, access in (("accessIPv4", server.access_ipv4),
                          ("accessIPv6", server.access_ipv6)):
        if access:
            shown.append("%s: %s" % (label, access))
    return "; ".join(shown) or "none"


def leftovers(conn):
    """Every resource tagged with a build id, as :class:`sweep.Leftover`
    objects (results and JEOS cache entries included, with their role; active
    install media, which builds share, are not; an interrupted upload is).
    A build's owner, read from any of its resources, is given to all of them
    (keypairs carry no tags)."""
    found = []
    servers = {}
    for server in conn.compute.servers():
        metadata = server.metadata or {}
        build = metadata.get(cloud.BUILD_TAG)
        if build:
            servers[server.id] = build
            found.append(sweep.Leftover(build, "server", server.id,
                                        server.name,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=server.created_at))
    for ip in conn.network.ips():
        build = _tag(ip, cloud.BUILD_TAG)
        if build:
            found.append(sweep.Leftover(build, "floating IP", ip.id,
                                        ip.floating_ip_address,
                                        owner=_tag(ip, cloud.OWNER_TAG),
                                        created=ip.created_at))
    groups = {}
    for group in conn.network.security_groups():
        build = _tag(group, cloud.BUILD_TAG)
        if build:
            groups[group.id] = sweep.Leftover(build, "security group",
                                              group.id, group.name,
                                              owner=_tag(group, cloud.OWNER_TAG),
                                              created=group.created_at)
    found += _ports(conn, servers, groups)
    found += groups.values()
    for keypair in conn.compute.keypairs():
        name = keypair.name
        if name.startswith(cloud.NAME_PREFIX) and name.endswith("-key"):
            found.append(sweep.Leftover(name[len(cloud.NAME_PREFIX):-len("-key")],
                                        "keypair", name, name))
    if nova_volumes.has_volumes(conn):
        found += _volumes(conn)
    roles = {"image": sweep.RESULT, sweep.JEOS_CACHE: sweep.JEOS_CACHE}
    for image in conn.image.images():
        props = image.properties or {}
        build = props.get(cloud.BUILD_TAG)
        if props.get(cloud.ROLE) == "media" and image.status == "active":
            continue  # the shared media cache; only a broken upload is left
        if build:
            found.append(sweep.Leftover(build, "image", image.id, image.name,
                                        role=roles.get(props.get(cloud.ROLE)),
                                        owner=props.get(cloud.OWNER_TAG),
                                        created=image.created_at))
    return sweep.with_owners(found)


def _volumes(conn):
    """Tagged volumes, and their snapshots and tagged ones (a snapshot
    keeps its volume from being deleted)."""
    found = []
    volumes = {}
    for volume in conn.block_storage.volumes():
        metadata = volume.metadata or {}
        build = metadata.get(cloud.BUILD_TAG)
        if build:
            volumes[volume.id] = build
            found.append(sweep.Leftover(build, "volume", volume.id,
                                        volume.name or volume.id,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=volume.created_at))
    for snapshot in conn.block_storage.snapshots():
        metadata = snapshot.metadata or {}
        build = metadata.get(cloud.BUILD_TAG) or volumes.get(snapshot.volume_id)
        if build:
            found.append(sweep.Leftover(build, "volume snapshot",
                                        snapshot.id,
                                        snapshot.name or snapshot.id,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=snapshot.created_at))
    return found


def _tag(resource, name):
    """The value of a Neutron resource's ``name=value`` tag, or None."""
    for tag in resource.tags or ():
        if tag.startswith(name + "="):
            return tag[len(name) + 1:]
    return None


def _ports(conn, servers, groups):
    """Ports of tagged servers, tagged ports, and ports that hold a tagged
    security group for a server that is gone: a port keeps its security
    groups until Neutron removes it."""
    found = []
    for port in conn.network.ports():
        build = _tag(port, cloud.BUILD_TAG) or servers.get(port.device_id)
        if not build and not port.device_id:
            build = next((groups[g].build for g in port.security_group_ids
                          or () if g in groups), None)
        if build:
            found.append(sweep.Leftover(build, "port", port.id,
                                        port.name or port.id))
    return found


def sweep_cloud(conn, protected, dry_run=False, log=None):
    """Remove the :func:`leftovers` that ``protected`` does not keep, in one
    pass: servers (waiting until each is gone), then floating IPs, ports,
    security groups, keypairs, volumes and images. Returns the Outcomes; after
    removing, anything it removed that is still listed is an Outcome with an
    error too. What is new in that listing (a build that ended or was killed
    meanwhile, which another sweep may be removing) is left to the next
    sweep."""
    from openstack import exceptions as sdk
    log = log or LOG

    def delete(function, **kwargs):
        def start(leftover):
            # A conflict ("in use") may clear once Neutron or Nova has caught
            # up with the removals before it.
            last = {"error": None}
            for _ in waiter.iterate(
                    CONFLICT_TIMEOUT,
                    lambda: "still refused: %s" % last["error"]):
                try:
                    function(leftover.id, ignore_missing=True, **kwargs)
                    return
                except sdk.ConflictException as exc:
                    last["error"] = cloud.explain(exc)
        return start

    kinds = [
        sweep.Kind("server", delete(conn.compute.delete_server),
                   lambda leftover: _wait_server_gone(conn, leftover.id)),
        sweep.Kind("floating IP", delete(conn.network.delete_ip)),
        sweep.Kind("port", delete(conn.network.delete_port)),
        sweep.Kind("security group",
                   delete(conn.network.delete_security_group)),
        sweep.Kind("keypair", delete(conn.compute.delete_keypair)),
        # Not every cloud has Cinder: its proxy only when there are volumes.
        sweep.Kind("volume snapshot", delete(
            lambda *args, **kwargs: conn.block_storage.delete_snapshot(
                *args, **kwargs)),
            lambda leftover: nova_volumes.wait_snapshot_gone(
                conn, leftover.id)),
        sweep.Kind("volume", delete(lambda *args, **kwargs: conn.block_storage
                                    .delete_volume(*args, **kwargs)),
                   lambda leftover: nova_volumes.wait_volume_gone(
                       conn, leftover.id)),
        sweep.Kind("image", delete(conn.image.delete_image)),
    ]
    found = cloud.call("listing the cloud's tagged resources", leftovers, conn)
    outcomes = sweep.remove(found, kinds, protected, dry_run=dry_run,
                            explain=cloud.explain, log=log)
    if dry_run:
        return outcomes
    removed = {(outcome.leftover.kind, outcome.leftover.id)
               for outcome in outcomes if not outcome.error}
    for leftover in cloud.call("listing the cloud's tagged resources", leftovers,
                               conn):
        if (leftover.kind, leftover.id) in removed:
            outcomes.append(sweep.Outcome(leftover,
                                          "still there after the sweep"))
    return outcomes


#: Seconds between two console reads while waiting for a guest to power
#: off (its status is polled more often), and the lines read when no
#: installer screen is watched (their change is the activity).
CONSOLE_EVERY = 10
CONSOLE_TAIL = 40
#: Seconds a deletion refused as "in use" (HTTP 409) is retried.
CONFLICT_TIMEOUT = 30


def _wait_server_gone(conn, server_id, timeout=300):
    """Wait until Nova no longer has the server (its ports are released by
    then). Status DELETED is not gone yet: nova-compute shows it before it
    gives back the server's placement allocation and removes it (seconds,
    in which it still counts). A deletion that fails puts it in ERROR with
    no task."""
    from openstack import exceptions as sdk

    def poll():
        try:
            return conn.compute.get_server(server_id)
        except sdk.NotFoundException:
            return None

    waiter.wait_for(
        "waiting for server %s to be deleted" % server_id, poll,
        lambda server: server is None,
        timeout=timeout,
        failed=lambda server: faults.server_error(server, conn)
        if server.status == "ERROR" and not server.task_state else None)


class JeosCache(jeos.Cache):
    """JEOS cache entries as private Glance images of the project, found by
    their key property; they are never leftovers to a sweep."""

    where = "Glance"

    def __init__(self, conn, log=None):
        self.conn = conn
        self.log = log or LOG

    def _images(self, **filters):
        """The project's entries (with ``filters``), asked of Glance by
        role and owner: each as the image's JSON."""
        client = glance.of(self.conn)
        filters.update({cloud.ROLE: sweep.JEOS_CACHE,
                        "owner": self.conn.current_project_id})
        return glance.call("listing the JEOS cache", lambda: [
            dict(image) for image in client.images.list(filters=filters)])

    @staticmethod
    def _entry(image):
        try:
            stored = float(image.get(JEOS_STORED))
        except (TypeError, ValueError):
            stored = 0.0
        return jeos.Entry(image.get(JEOS_KEY), image["id"],
                          image.get(JEOS_NAME) or image.get("name"), stored,
                          image.get(cloud.BUILD_TAG), image.get("size"))

    def entries(self):
        return [self._entry(image) for image in self._images()]

    def find(self, key):
        found = sorted(self._images(**{JEOS_KEY: key}),
                       key=lambda image: self._entry(image).created,
                       reverse=True)
        for image in found:
            if image.get("status") == "active" and image.get("size"):
                return self._entry(image)
            self.log.warning("Ignoring the broken JEOS cache entry %s (Glance "
                             "says it is %s); removing it", image["id"],
                             image.get("status"))
            self.remove(self._entry(image))
        return None

    def add(self, captured, key, name, build):
        stored = int(time.time())
        props = {cloud.ROLE: sweep.JEOS_CACHE, JEOS_KEY: key, JEOS_NAME: name,
                 JEOS_STORED: "%d" % stored}
        # One JSON patch: the entry's name and properties, and no owner tag
        # (no process owns an entry: a sweep must not judge it by one).
        ops = [{"op": "replace", "path": "/name",
                "value": "%sjeos-%s" % (cloud.NAME_PREFIX, key[:12])}] + [
            {"op": "add", "path": "/" + k, "value": v}
            for k, v in props.items()] + [
            {"op": "remove", "path": "/" + cloud.OWNER_TAG}]

        def made():  # the patch whose answer was lost was applied
            found = self.conn.image.get("/images/%s" % captured).json()
            return found if found.get(JEOS_KEY) == key else None
        image = retries.send_once(
            "making image %s a JEOS cache entry" % captured,
            lambda: patch_image(self.conn, captured, ops).json(), made,
            log=self.log)
        return jeos.Entry(key, captured, name, float(stored),
                          image.get(cloud.BUILD_TAG), image.get("size"))

    def remove(self, entry):
        cloud.call("deleting the JEOS cache entry %s" % entry.id,
                   self.conn.image.delete_image, entry.id, ignore_missing=True)

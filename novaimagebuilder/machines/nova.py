"""The Nova backend: the build's machines are Nova servers, its disks Glance
images.

Every server, image, keypair, security group and floating IP a build makes is
named ``imgfac-nova-<build id>-...`` and tagged with the build id (server
metadata, image properties, Neutron tags), so a sweep can find leftovers.
"""
import logging

from novaimagebuilder import cloud
from novaimagebuilder.machines import nova_capture
from novaimagebuilder.machines import nova_guest
from novaimagebuilder.machines import nova_installer
from novaimagebuilder.machines import nova_removal
from novaimagebuilder.machines import nova_servers
from novaimagebuilder.machines import nova_volumes
from novaimagebuilder import pipeline
from novaimagebuilder import sweep
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)


class NovaBackend(nova_installer.Installer, nova_servers.Servers,
                  nova_capture.Capture, nova_guest.Guest,
                  nova_removal.Removal, pipeline.Backend):
    """The machines of one build, Nova servers: the installer
    (:mod:`nova_installer`), the customization guest (:mod:`nova_guest`),
    their servers (:mod:`nova_servers`), captures (:mod:`nova_capture`) and
    removal (:mod:`nova_removal`)."""
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
        self.owner = sweep.this_process()
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

"""Volume-backed builds: the Nova backend's servers boot from Cinder volumes
the build makes itself, and their disks are captured by uploading the volume
to Glance.

A volume is made from an image (the installer's blank disk, the JEOS), named
``imgfac-nova-<build id>-<role>-volume`` and tagged with the build id and its
process (volume metadata, as servers are), plus the id of the server it is
the root disk of once that server exists. Servers map it with
``delete_on_termination`` false: the build deletes its volumes itself.

A capture never uses Nova's createImage (for a volume-backed server it makes
a 0-byte image over Cinder snapshots, which pin the volume): the stopped
server is deleted (since a Cinder security fix only Nova may detach a root
volume), the volume is uploaded to Glance (``os-volume_upload_image``) with
the build's tags in its image metadata (Cinder copies them to the image), and
once the image is active and the volume available again, the volume is
deleted.
"""
import math

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder import retries
from novaimagebuilder import waiter

GIB = 1024 ** 3
#: Volume metadata: the server whose root disk the volume is.
SERVER_TAG = "imgfac_server"
#: Seconds a volume may take to be made from an image (download, convert,
#: import). Its upload to Glance may take as long as a snapshot
#: (snapshot_timeout).
CREATE_TIMEOUT = 1800
#: Seconds a volume may take to be available again once its server is gone
#: or its upload is done.
RELEASE_TIMEOUT = 300
#: Cinder states that never become ``available`` by themselves.
BROKEN = ("error", "error_deleting", "error_extending", "error_restoring")


def check(conn, volume_type):
    """One line unless the cloud has a block-storage service (and the
    volume type, when one is named)."""
    if not has_volumes(conn):
        raise errors.BuildError(
            "boot_from_volume needs the cloud's block storage (Cinder), and "
            "this cloud's catalog has none")
    if volume_type:
        found = cloud.call("looking up volume type %r" % volume_type,
                           conn.block_storage.find_type, volume_type)
        if found is None:
            names = sorted(t.name for t in cloud.call(
                "listing volume types", conn.block_storage.types))
            raise errors.BuildError("Cinder has no volume type %r (types: %s)"
                                    % (volume_type, ", ".join(names) or
                                       "none"))


def size_gib(volume_size, disk_size, flavor):
    """The volume size in GiB: ``volume_size``, else the disk size
    (``disk_size`` bytes, rounded up), else the flavor's disk, else 10."""
    if volume_size:
        return int(volume_size)
    if disk_size:
        return int(math.ceil(disk_size / GIB))
    return flavor.disk or 10


class Volumes:
    """The volumes of one build (``backend``: its NovaBackend), ``size``
    GiB of ``volume_type`` (None: Cinder's default)."""

    def __init__(self, backend, size, volume_type=None):
        self.backend = backend
        self.size = size
        self.volume_type = volume_type

    @property
    def conn(self):
        return self.backend.conn

    def name(self, role):
        return self.backend.server_name(role) + "-volume"

    def own(self, **metadata):
        """This build's volumes whose metadata include ``metadata``."""
        wanted = dict(metadata, **{cloud.BUILD_TAG: self.backend.build_id})
        return [volume for volume in self.conn.block_storage.volumes()
                if all((volume.metadata or {}).get(k) == v
                       for k, v in wanted.items())]

    def root(self, role, image_id, server=None):
        """The block-device mapping of a root volume of ``role`` made from
        ``image_id``: the one an earlier run of the build made for no server
        yet or for ``server`` (the server adopted), else a new one (one an
        earlier run made for another server is deleted); it goes with the
        machine (NovaBackend._parts finds it by its name). Returns
        ``(mapping, volume id)`` once the volume is available (or in use by
        ``server``)."""
        name = self.name(role)
        volume = None
        for found in self.own():
            if found.name != name:
                continue
            if volume is None and found.status not in BROKEN and \
                    (found.metadata or {}).get(SERVER_TAG) in (None, server):
                volume = found
                self.backend.log.info("Adopting volume %s (%s), made by an "
                                      "earlier run of this build", name,
                                      found.id)
            else:
                self.backend.log.info("Deleting volume %s (%s, %s), left by "
                                      "an earlier run of this build", name,
                                      found.id, found.status)
                self.remove(found.id)
        if volume is None:
            volume = self._create(name, image_id)
        if volume.status != "in-use":
            self.wait(volume.id, name, "available", ("creating",
                                                     "downloading"),
                      CREATE_TIMEOUT)
        return [{"boot_index": 0, "uuid": volume.id, "source_type": "volume",
                 "destination_type": "volume",
                 "delete_on_termination": False}], volume.id

    def _create(self, name, image_id):
        image = cloud.call("looking up image %s" % image_id,
                           self.conn.image.get_image, image_id)
        # Cinder refuses a volume smaller than the image's disk.
        size = max(self.size, image.min_disk or 0,
                   int(math.ceil((image.virtual_size or 0) / GIB)))
        attrs = dict(name=name, size=size, image_id=image_id,
                     metadata={cloud.BUILD_TAG: self.backend.build_id,
                               cloud.OWNER_TAG: self.backend.owner},
                     description="imgfac-nova build %s"
                     % self.backend.build_id)
        if self.volume_type:
            attrs["volume_type"] = self.volume_type
        self.backend.log.info("Making volume %s (%d GiB) from image %s",
                              name, size, image_id)
        return retries.send_once(
            "Cinder could not make volume %s" % name,
            lambda: self.conn.block_storage.create_volume(**attrs),
            lambda: next((v for v in self.own() if v.name == name), None),
            cancel=self.backend.cancel, log=self.backend.log)

    def note_server(self, volume_id, server_id):
        """Tag the volume with the server it is the root disk of (adopt
        finds it by this once the server is gone)."""
        cloud.call("tagging volume %s with its server" % volume_id,
                   self.conn.block_storage.set_volume_metadata, volume_id,
                   **{SERVER_TAG: server_id})

    def of_server(self, server_id):
        """This build's volume of server ``server_id`` (openstacksdk's), or
        None."""
        found = self.own(**{SERVER_TAG: server_id})
        return found[0] if found else None

    def wait(self, volume_id, name, status, busy, timeout):
        """Wait until the volume (``name``: its name, None: unnamed in
        messages) is ``status``; one line naming the volume and its state
        when it breaks, goes elsewhere than ``busy`` states, or stays busy
        past ``timeout``."""
        last = {"status": None}

        def poll():
            volume = self.conn.block_storage.get_volume(volume_id)
            last["status"] = volume.status
            return volume

        def failed(volume):
            if volume.status in BROKEN or volume.status not in busy:
                return "Cinder says it is %s" % volume.status
            return None

        label = "volume %s (%s)" % (name, volume_id) if name else \
            "volume %s" % volume_id
        what = "waiting for %s to become %s" % (label, status)
        try:
            return waiter.wait_for(what, poll,
                                   lambda v: v.status == status, timeout,
                                   failed=failed, cancel=self.backend.cancel)
        except errors.WaitTimeout:
            raise errors.WaitTimeout("%s is still %s after %d s" % (
                label, last["status"], timeout)) from None

    def remove(self, volume_id):
        """Delete the volume (gone: nothing to do) and wait until it is
        gone."""
        from openstack import exceptions as sdk

        try:
            self.conn.block_storage.delete_volume(volume_id,
                                                  ignore_missing=True)
        except sdk.HttpException as exc:
            raise errors.BuildError("deleting volume %s: %s" % (
                volume_id, cloud.explain(exc))) from None
        wait_volume_gone(self.conn, volume_id)

    # -- captures --------------------------------------------------------------

    def upload(self, machine, name, metadata, not_inherited):
        """Upload the root volume of the stopped server ``machine`` to
        Glance as the image ``name`` with ``metadata``, without the image
        properties ``not_inherited`` the volume took from its source image
        (and without its owner tag): the server is deleted first (the
        volume stays); returns the new image's id."""
        log = self.backend.log
        volume_id = machine.volume
        log.info("Deleting %s to upload its volume %s to Glance", machine,
                 volume_id)
        self.backend.delete_server(machine.id)
        vname = "volume %s" % volume_id
        volume = self.wait(volume_id, None, "available",
                           ("in-use", "detaching", "available"),
                           RELEASE_TIMEOUT)
        # What Cinder copies to the image: the build's tags, not the
        # installer's boot properties or the keys of the JEOS cache entry
        # the volume was made from (the image would be an entry too).
        held = volume.volume_image_metadata or {}
        wanted = {k: v for k, v in metadata.items() if str(held.get(k)) !=
                  str(v)}
        if wanted:
            cloud.call("tagging the image metadata of %s" % vname,
                       self.conn.block_storage.set_volume_image_metadata,
                       volume_id, **wanted)
        unwanted = tuple(not_inherited) + (cloud.OWNER_TAG,)
        dropped = [key for key in unwanted
                   if key in held and key not in metadata]
        if dropped:
            cloud.call("removing image metadata from %s" % vname,
                       self.conn.block_storage.delete_volume_image_metadata,
                       volume_id, keys=dropped)
        log.info("Uploading %s to Glance as %s", vname, name)
        answer = retries.send_once(
            "Cinder could not upload %s to Glance" % vname,
            lambda: self.conn.block_storage.upload_volume_to_image(
                volume_id, name, disk_format="qcow2",
                container_format="bare"),
            lambda: self._uploading(name, metadata), cancel=self.backend.cancel,
            log=log)
        return answer["image_id"]

    def _uploading(self, name, metadata):
        image = self.backend.image_with(name, metadata)
        return {"image_id": image.id} if image is not None else None

    def release(self, machine):
        """After the upload of ``machine``'s volume: wait until Cinder is
        done with it, then delete it. Returns the image's minimum sizes as
        Nova gives a snapshot of a server (Cinder gives none): min_disk the
        larger of the source image's and the root disk's (here the volume),
        min_ram the source image's."""
        vname = "volume %s" % machine.volume
        volume = self.wait(machine.volume, None, "available", ("uploading",),
                           waiter.for_size(self.backend.disk_bytes(),
                                           *self.backend.snapshot_timeout))
        held = volume.volume_image_metadata or {}
        sizes = {"min_disk": max(int(held.get("min_disk") or 0), volume.size),
                 "min_ram": int(held.get("min_ram") or 0)}
        self.remove(machine.volume)
        self.backend.log.info("Removed %s", vname)
        return sizes


def has_volumes(conn):
    """True when the catalog has Cinder (asked without the SDK's warning)."""
    return any(service.get("type") in ("block-storage", "volumev3", "volume")
               for service in conn.service_catalog)


def wait_volume_gone(conn, volume_id, timeout=300):
    _wait_cinder_gone("volume %s" % volume_id,
                      lambda: conn.block_storage.get_volume(volume_id),
                      timeout)


def wait_snapshot_gone(conn, snapshot_id, timeout=300):
    _wait_cinder_gone("volume snapshot %s" % snapshot_id,
                      lambda: conn.block_storage.get_snapshot(snapshot_id),
                      timeout)


def _wait_cinder_gone(what, get, timeout):
    from openstack import exceptions as sdk

    def poll():
        try:
            return get()
        except sdk.NotFoundException:
            return None

    waiter.wait_for(
        "waiting for %s to be deleted" % what, poll,
        lambda found: found is None, timeout=timeout,
        failed=lambda found: "Cinder says %s" % found.status
        if found.status == "error_deleting" else None)

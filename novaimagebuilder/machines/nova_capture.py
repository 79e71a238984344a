"""Capturing a stopped server as a Glance image (a Nova snapshot, or a
Cinder upload of its volume), and discarding one."""
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.machines import faults
from novaimagebuilder.machines import nova_installer
from novaimagebuilder.machines import nova_jeos_cache
from novaimagebuilder import retries
from novaimagebuilder import waiter

#: What a capture's image must not keep of the image its server booted
#: from (Nova's snapshot and Cinder's upload both copy its properties): the
#: installer's direct boot (the JEOS would boot the installer again) and a
#: JEOS cache entry's keys.
NOT_INHERITED = nova_installer.DIRECT_BOOT_PROPERTIES + (
    nova_jeos_cache.JEOS_KEY, nova_jeos_cache.JEOS_NAME,
    nova_jeos_cache.JEOS_STORED)
#: Seconds Nova may take to end a stopped server's last task (a stop's
#: powering-off) before a capture deletes it.
SETTLE_TIMEOUT = 300


class Capture:
    """Captures of a :class:`nova.NovaBackend` (a mixin of it)."""

    def capture(self, machine, role):
        if machine.rescued:  # Nova snapshots no rescued server
            self._unrescue(machine)
        name = (self.server_name("jeos") if role == "jeos"
                else self.image_name)
        metadata = {cloud.BUILD_TAG: self.build_id, cloud.ROLE: role}
        if role == "jeos":
            metadata[cloud.OWNER_TAG] = self.owner
        image = self.image_with(name, metadata)
        limit = waiter.for_size(self.disk_bytes(), *self.snapshot_timeout)
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
                lambda: self.image_with(name, metadata),
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
                    lambda: self.image_with(name, sizes, image.id),
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
                    lambda: self.image_with(name, wanted, image.id),
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
        size = getattr(image, "virtual_size", None) or self.disk_bytes()
        return -(-size // 1024 ** 3)

    def capture_limit(self):
        size = self.disk_bytes()
        return waiter.describe(waiter.for_size(size, *self.snapshot_timeout),
                               size)

    def disk_bytes(self):
        """The size of the build servers' root disk (their volume's; else
        the flavor's; 10 GiB for a flavor without one, as the installer
        disk)."""
        return (self.volumes.size if self.volumes else
                self.flavor.disk or 10) * 1024 ** 3

    def image_with(self, name, properties, image_id=None):
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
                lambda: nova_jeos_cache.patch_image(self.conn, image_id, patch),
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

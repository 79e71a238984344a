"""The install media in Glance and the installer server: a blank disk image
that boots the installer kernel directly, or is rescued with a remastered
install ISO (Nova's stable device rescue)."""
import hashlib
import os
import subprocess
import tempfile

from novaimagebuilder import cloud
from novaimagebuilder.images import glance
from novaimagebuilder.installer import initrd
from novaimagebuilder.installer import remaster
from novaimagebuilder import pipeline
from novaimagebuilder import waiter

#: Image properties that make Nova boot the installer kernel directly.
DIRECT_BOOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line")
#: Property of the ISO image that makes Nova's rescue a stable device rescue
#: attaching it as a CD-ROM; Nova picks the CD-ROM bus for the machine type
#: (ide on pc, sata on q35) as hw_rescue_bus is not set.
RESCUE_AS_CDROM = {"hw_rescue_device": "cdrom"}
#: A volume-backed server is rescued only by an image with both rescue
#: properties: the CD-ROM's bus is then named (the one Nova picks for the
#: "pc" machine type).
RESCUE_BUS = {"hw_rescue_bus": "ide"}


class Installer:
    """The install media and installer of a :class:`nova.NovaBackend` (a
    mixin of it)."""

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
        uploaded; it goes with the installer (see Removal._parts)."""
        name = self.server_name(role)
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

    # -- the installer -------------------------------------------------------

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
        it made is found by this build's tags and removed (see Removal._remove)."""
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

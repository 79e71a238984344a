"""Removing a build's machine and what belongs only to it, all found by the
build's tags and names, whichever process made them."""
from novaimagebuilder import cloud
from novaimagebuilder import errors


class Removal:
    """Removal of a :class:`nova.NovaBackend`'s machines (a mixin of it)."""

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
            found = self._server_named(self.server_name(role))
            server_id = found and found.id
        if server_id:
            remove("server %s" % server_id,
                   lambda: self.delete_server(server_id))
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
                                         self.server_name("ssh"))]
        key = self.server_name("key")
        return parts + [("keypair %s" % key, lambda: self.conn.compute.
                         delete_keypair(key, ignore_missing=True))]

    def _installer_parts(self):
        """The installer's private images (see _parts)."""
        private = {self.server_name(kind) for kind in (
            "installer-disk", "installer-ramdisk", "installer-iso")}
        return [("image %s" % image["id"],
                 lambda i=image["id"]: self.discard(i))
                for image in self._own_images() if image["name"] in private]

"""The customization guest: booted from the JEOS with the build's keypair,
security group and floating IP, and the address SSH reaches it at."""
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.machines import nova_connect
from novaimagebuilder.machines import ssh_source
from novaimagebuilder import retries


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


class Guest:
    """The customization guest of a :class:`nova.NovaBackend` (a mixin of
    it)."""

    def boot_guest(self, jeos, user, public_key, user_data=None):
        self._clear_guest()
        try:
            name = self.server_name("key")
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
        """The build's security group (sent once: see retries.send_once;
        Neutron takes a second group of the same name)."""
        name = self.server_name("ssh")
        description = "SSH for imgfac-nova build %s" % self.build_id
        group = retries.send_once(
            "creating the security group",
            lambda: self.conn.network.create_security_group(
                name=name, description=description),
            lambda: next((found for found in self.conn.network.
                          security_groups(name=name)
                          if found.description == description), None),
            cancel=self.cancel, log=self.log)
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
        """The floating_ip_network, else the cloud's only external
        network."""
        if self.floating_ip_network:
            return nova_connect.find_network(self.conn,
                                             self.floating_ip_network)
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

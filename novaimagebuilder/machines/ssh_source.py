"""Where the build's SSH connections to its guest come from, as the cloud
sees them: the source of the rule that opens SSH in the build's own security
group.

``ssh_source_cidr`` names it (:func:`parse`); without it
:func:`default_sources` takes the address this machine's route to the guest
leaves from (or, through a jump host, the jump host's address), plus, when
Neutron knows that address as a floating IP of the project, its fixed
address, and the other way round. What no cloud API shows (a NAT in front
of the build host, a jump host's own way out) needs ``ssh_source_cidr``.
"""
import ipaddress
import socket

from novaimagebuilder import errors


def parse(text):
    """The networks of ``ssh_source_cidr`` (comma-separated, e.g.
    ``203.0.113.7/32,2001:db8::/64``; a bare address is one host), or []
    when empty; ValueError with a one-line reason."""
    found = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"ssh_source_cidr {part!r} is not an IP network "
                             "(such as 203.0.113.7/32)") from None
    if (text or "").strip() and not found:
        raise ValueError(f"ssh_source_cidr {text!r} names no network")
    return found


def route_source(host, port=22):
    """The local address this machine's route to ``host`` leaves from (a
    UDP socket is connected, which sends nothing)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        return sock.getsockname()[0]


def resolve(host, like):
    """An address of ``host`` of the IP version of address ``like`` (the
    guest's), else its first."""
    infos = socket.getaddrinfo(host, 22, type=socket.SOCK_STREAM)
    version = ipaddress.ip_address(like).version
    same = [i for i in infos
            if ipaddress.ip_address(i[4][0]).version == version]
    return (same or infos)[0][4][0]


def as_the_cloud_sees(conn, address):
    """``address`` with the floating or fixed address Neutron pairs it
    with in the project (a build host or jump host inside the cloud)."""
    seen = {address}
    for ip in conn.network.ips(floating_ip_address=address):
        if ip.fixed_ip_address:
            seen.add(ip.fixed_ip_address)
    for ip in conn.network.ips(fixed_ip_address=address):
        if ip.floating_ip_address:
            seen.add(ip.floating_ip_address)
    return sorted(seen)


def default_sources(conn, guest, via=None):
    """The networks (one host each) SSH to ``guest`` (an address or host
    name) comes from: this machine's, or jump host ``via``'s. BuildError
    (one line) when they cannot be told."""
    try:
        target = socket.getaddrinfo(guest, 22, type=socket.SOCK_STREAM)[0][4][0]
        address = resolve(via, target) if via else route_source(target)
    except OSError as exc:
        raise errors.BuildError(
            f"cannot tell which address SSH to {guest} comes from "
            f"({exc.strerror or exc}): give ssh_source_cidr") from None
    return [ipaddress.ip_network(a) for a in as_the_cloud_sees(conn, address)]


__all__ = ["parse", "route_source", "resolve", "as_the_cloud_sees",
           "default_sources"]

"""Loopback addresses where a guest's SSH port is published."""

import errno
import ipaddress
import socket


def fixed_ipv4_addresses(network_info):
    """(mac, fixed IPv4) of each VIF Neutron gave the server."""
    nics = []
    for vif in network_info or []:
        ipv4 = [ip['address'] for ip in vif.fixed_ips()
                if ip['version'] == 4]
        nics.append((vif['address'], ipv4[0] if ipv4 else None))
    return nics


def port_free(address, port=22):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def pick_free(pool, taken):
    """First address of the pool whose port 22 is free and not taken."""
    for address in ipaddress.ip_network(pool).hosts():
        address = str(address)
        if address not in taken and port_free(address):
            return address
    raise RuntimeError('no free loopback address left in %s' % pool)

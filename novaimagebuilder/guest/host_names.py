"""Host names and addresses as SSH parameters give them."""
import ipaddress
import re

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*\.?")


def check_host(text, what="ssh_host"):
    """A host name or IP address (IPv6 with or without brackets), without
    the brackets; ValueError with a one-line reason otherwise."""
    host = (text or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{what} {text!r} is not an IPv6 address in "
                             "brackets") from None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise ValueError(f"{what} {text!r} is not a host name or IP address")
    return host


def host_port(host, port):
    """"host:port", the host bracketed when it is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

"""Which addresses a build may reach on a caller's behalf.

A REST caller names URLs the daemon then opens itself (install media, a
checksum file, a provider's Keystone, status callbacks). Without a check a
project member could have the daemon read ``file:///etc/...``, the metadata
service at 169.254.169.254 or a service on the daemon's loopback, and get
the bytes back through Glance. :class:`AddressPolicy` refuses such URLs: only
http(s), and no host whose addresses are loopback, link-local, multicast,
unspecified or in the denied networks, unless the operator allowed the host.
The check resolves the host now and is made again on every redirect
(:func:`opener`). The CLI's operator is trusted: it passes no policy.
"""
import ipaddress
import socket
import urllib.parse
import urllib.request

from novaimagebuilder import errors
from novaimagebuilder import scrub

#: Networks no caller's URL may reach, whatever the configuration says.
ALWAYS_DENIED = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10",
                 "0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8",
                 "::ffff:127.0.0.0/104", "::ffff:169.254.0.0/112")
#: The private and shared ranges, denied unless configured otherwise.
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
           "fc00::/7")


class RefusedAddress(errors.BuildError):
    """A URL the policy does not let a caller reach; str() is one line."""


class AddressPolicy:
    """Checks URLs against denied networks, with operator-allowed hosts."""

    def __init__(self, denied=PRIVATE, allowed_hosts=(), resolve=None,
                 internal=False):
        """``denied``: CIDRs refused besides :data:`ALWAYS_DENIED`;
        ``allowed_hosts``: ``host`` or ``host:port`` entries reachable
        whatever their address (the operator's own mirror); ``internal``:
        no address is refused, only schemes."""
        self.denied = [] if internal else [
            ipaddress.ip_network(n, strict=False)
            for n in (*ALWAYS_DENIED, *denied)]
        self.allowed_hosts = {h.strip().lower() for h in allowed_hosts
                              if h.strip()}
        self._resolve = resolve or _resolve

    def _allowed(self, host, port):
        return host in self.allowed_hosts or \
            "%s:%d" % (host, port) in self.allowed_hosts or \
            "[%s]:%d" % (host, port) in self.allowed_hosts

    def refusal(self, url, what="URL"):
        """Why ``url`` may not be reached (one line), or None."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            return "%s %s is not a valid URL: %s" % (what, scrub.scrub(url), exc)
        if parts.scheme not in ("http", "https"):
            return "%s %s: only http and https URLs are allowed" % (
                what, scrub.scrub(url))
        host = (parts.hostname or "").lower()
        if not host:
            return "%s %s names no host" % (what, scrub.scrub(url))
        if self._allowed(host, port):
            return None
        try:
            addresses = self._resolve(host, port)
        except OSError as exc:
            return "%s %s: cannot resolve %s: %s" % (
                what, scrub.scrub(url), host, getattr(exc, "strerror", None) or exc)
        for address in addresses:
            for network in self.denied:
                if address.version == network.version and \
                        address in network:
                    named = host if host == str(address) else \
                        "%s is %s, which is" % (host, address)
                    return ("%s %s: %s in %s, where builds may not reach"
                            % (what, scrub.scrub(url), named, network))
        return None

    def check(self, url, what="URL"):
        """Raise RefusedAddress unless ``url`` may be reached."""
        reason = self.refusal(url, what)
        if reason:
            raise RefusedAddress(reason)


def _resolve(host, port):
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, check):
        self._check = check

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._check(newurl, "redirect to")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def opener(check=None):
    """A urllib opener; with ``check`` (a callable raising on a refused
    URL, e.g. :meth:`AddressPolicy.check`) every redirect is checked."""
    if check is None:
        return urllib.request.build_opener()
    return urllib.request.build_opener(_CheckedRedirects(check))


def urlopen(request, timeout, check=None):
    """Open ``request`` (a URL or Request), checking it and its redirects
    with ``check`` when given."""
    if check is not None:
        url = request if isinstance(request, str) else request.full_url
        check(url, "URL")
    return opener(check).open(request, timeout=timeout)

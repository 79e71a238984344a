"""HTTP(S) proxies a build gives the guest: its installer and its package
manager (``http_proxy``, ``https_proxy``, ``no_proxy``, ``proxy_persist``).

The install script generators put the proxy into the installer's mirror
settings; customization (customize.py) sets it for the package manager and
takes it out again at the end unless it persists.
"""
import dataclasses
import re
import urllib.parse


@dataclasses.dataclass(frozen=True)
class Proxy:
    """HTTP(S) proxies for the guest's package manager (and the installer).

    ``http`` and ``https`` are proxy URLs (``http://host:port/``) for
    http:// and https:// sources; ``no_proxy`` lists host names that are
    reached directly; ``persist`` keeps the settings in the image.
    """

    http: str | None = None
    https: str | None = None
    no_proxy: tuple = ()
    persist: bool = False

    @classmethod
    def from_parameters(cls, parameters):
        """The proxy of the build parameters ``http_proxy``,
        ``https_proxy``, ``no_proxy`` (comma-separated) and
        ``proxy_persist``; None when neither proxy is set. ValueError
        (one line) for a URL that is not ``http(s)://host[:port][/]``."""
        http = check_proxy_url(parameters.get("http_proxy"), "http_proxy")
        https = check_proxy_url(parameters.get("https_proxy"), "https_proxy")
        hosts = tuple(h.strip() for h in (parameters.get("no_proxy") or "")
                      .split(",") if h.strip())
        if not (http or https):
            if hosts:
                raise ValueError("no_proxy is given but neither http_proxy "
                                 "nor https_proxy")
            return None
        return cls(http, https, hosts, bool(parameters.get("proxy_persist")))

    def tunnelled(self, forward):
        """This proxy as the guest reaches it through SSH: each proxy's
        host:port replaced by 127.0.0.1:N, N = ``forward(host, port)`` (one
        forward per distinct proxy)."""
        ports = {}

        def local(url):
            if not url:
                return url
            parts = urllib.parse.urlsplit(url)
            where = (parts.hostname, parts.port or
                     (443 if parts.scheme == "https" else 80))
            if where not in ports:
                ports[where] = forward(*where)
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = "%s127.0.0.1:%d" % (userinfo + "@" if userinfo else "",
                                         ports[where])
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return dataclasses.replace(self, http=local(self.http),
                                   https=local(self.https))

    def for_url(self, url):
        """The proxy for fetching ``url``: https_proxy for https:// (else
        http_proxy), http_proxy for anything else (else https_proxy)."""
        if url.startswith("https:"):
            return self.https or self.http
        return self.http or self.https


def check_proxy_url(text, what):
    """A proxy URL as given (None when empty); ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{what}: the port of {_shown_proxy(text)} is not "
                         "a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            parts.path not in ("", "/") or parts.query or \
            re.search(r"[\s\"'`$\\;]", text):
        raise ValueError(f"{what} {_shown_proxy(text)!r} is not a proxy URL "
                         "(http://host:port/)")
    return text


def _shown_proxy(url):
    """A proxy URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

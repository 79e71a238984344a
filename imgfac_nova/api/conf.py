"""The daemon's ``[api]`` options."""
from oslo_config import cfg

from novaimagebuilder import netguard

GROUP = "api"

_opts = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address the embedded server listens on."),
    cfg.PortOpt("bind_port", default=8075,
                help="Port the embedded server listens on (Image Factory's "
                     "8075)."),
    cfg.StrOpt("auth_strategy", default="keystone",
               choices=[("keystone", "tokens checked by keystonemiddleware's "
                                     "auth_token ([keystone_authtoken])"),
                        ("noauth", "no authentication: one operator on "
                                   "loopback, who sees every image")],
               help="How requests are authenticated."),
    cfg.IntOpt("max_concurrent_builds", default=2, min=1,
               help="Builds running at once; later ones wait as PENDING in "
                    "arrival order."),
    cfg.IntOpt("server_threads", default=16, min=1,
               help="Requests the embedded server handles at once."),
    cfg.StrOpt("cert_file",
               help="TLS certificate (PEM) of the embedded server; with "
                    "key_file, the server speaks HTTPS."),
    cfg.StrOpt("key_file", help="TLS private key (PEM) for cert_file."),
    cfg.ListOpt("url_denied_networks", default=list(netguard.PRIVATE),
                help="Networks (CIDR) that URLs named by API callers may not "
                     "reach (install media, checksum files, a provider's "
                     "endpoints, callbacks), besides loopback, link-local, "
                     "multicast and unspecified addresses, which are always "
                     "refused. Policy imgfac:build:internal_urls (and "
                     "imgfac:build:internal_callbacks) lifts this list for "
                     "a caller."),
    cfg.ListOpt("url_allowed_hosts", default=[],
                help="Hosts (host or host:port) that API callers' URLs may "
                     "reach whatever their address: the operator's own "
                     "mirror or media server, say."),
    cfg.IntOpt("callback_retry_seconds", default=300, min=0,
               help="How long a status callback that fails (no answer or a "
                    "5xx) is retried, with backoff, before it is given up."),
    cfg.IntOpt("allow_expired_window", default=172800, min=0,
               help="Keystone's [token] allow_expired_window of the cloud "
                    "(seconds; Keystone's default): how long past its expiry "
                    "the cloud accepts a caller's token sent with the "
                    "daemon's service token. A build of a caller who may "
                    "make no Keystone trust runs on that token; it says in "
                    "its log when its timeout could outlast the window, and "
                    "its failure says when the window was over."),
]


def register(conf):
    """Register the options and read them all, so a bad value is an error
    now, before the daemon does anything."""
    conf.register_opts(_opts, GROUP)
    for opt in _opts:
        getattr(conf.api, opt.dest)


def list_opts():
    """The options for oslo-config-generator."""
    return [(GROUP, _opts)]

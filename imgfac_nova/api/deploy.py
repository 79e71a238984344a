"""Assembling the WSGI application: request ids, a body size limit, then
authentication, then the router."""
import ipaddress
import logging

from keystonemiddleware import auth_token
from oslo_config import cfg
from oslo_middleware import opts as middleware_opts
from oslo_middleware import request_id
from oslo_middleware import sizelimit

from imgfac_nova import config
from imgfac_nova import store
from imgfac_nova.api import handlers
from imgfac_nova.api import inputs
from imgfac_nova.api import policy
from imgfac_nova.api import router
from imgfac_nova.api import service as build_service

LOG = logging.getLogger(__name__)


class NoAuth:
    """``auth_strategy = noauth``: every caller is the one operator (the
    project is the X-Project-Id header, else ``operator``)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        environ["HTTP_X_ROLES"] = "admin,member,reader"
        environ.setdefault("HTTP_X_USER_ID", "operator")
        environ.setdefault("HTTP_X_PROJECT_ID", "operator")
        environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
        return self.application(environ, start_response)


class OneOperator:
    """noauth's policy: the one operator may do everything, as with the
    CLI."""

    def enforce(self, rule, target, credentials, do_raise=False, exc=None,
                *args, **kwargs):
        return True


class UnsafeNoAuth(cfg.Error):
    """``noauth`` on an address other hosts reach."""


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BadTls(cfg.Error):
    """``cert_file`` and ``key_file`` cannot be loaded."""


def check(conf):
    """The ``[api]`` options that need more than their type (registered
    and read by :func:`imgfac_nova.api.conf.register`), checked before
    the daemon opens or creates its database: noauth only on loopback,
    url_denied_networks networks, the TLS certificate and key loadable.
    Raises a cfg.Error saying what in one line."""
    if conf.api.auth_strategy == "noauth" and \
            not _loopback(conf.api.bind_host):
        raise UnsafeNoAuth(
            "auth_strategy = noauth lets every caller act as the operator; "
            "it is refused unless bind_host is a loopback address (it is %s)"
            % conf.api.bind_host)
    inputs.check_networks(conf)
    if conf.api.cert_file or conf.api.key_file:
        import ssl
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\
                .load_cert_chain(conf.api.cert_file or "",
                                 conf.api.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise BadTls("[api] cert_file %s, key_file %s: %s" % (
                conf.api.cert_file, conf.api.key_file,
                getattr(exc, "strerror", None) or exc)) from None


class DatabaseUnusable(cfg.Error):
    """The image store's database cannot be used (one line, no password)."""


def service(conf):
    """The BuildService on the configured image store, opened: connected,
    an SQLite schema upgraded, an older release's records imported."""
    try:
        images = config.image_store(conf).open()
    except store.StoreError as exc:
        raise DatabaseUnusable(str(exc)) from None
    return build_service.BuildService(conf, images)


def deploy(conf, service):
    """The WSGI application for ``conf`` (:func:`check` ed) over
    ``service``: a request-id middleware around the auth middleware around
    the router."""
    noauth = conf.api.auth_strategy == "noauth"
    body_limit_default(conf)
    api = handlers.Api(service, OneOperator() if noauth else
                       policy.enforcer(conf), trusted=noauth)
    application = router.Router(api.routes())
    if noauth:
        LOG.warning("auth_strategy = noauth: requests are not authenticated "
                    "and every caller is the operator; loopback only")
        application = NoAuth(application)
    else:
        application = auth_token.AuthProtocol(
            application, {"oslo_config_config": conf})
    return request_id.RequestId(sizelimit.RequestBodySizeLimiter(
        application, conf))


def body_limit_default(conf):
    """oslo.middleware's body size limit, by default room for the largest
    template accepted (max_template_bytes) and its parameters."""
    for group, opts in middleware_opts.list_opts_sizelimit():
        conf.register_opts(opts, group)
    conf.set_default("max_request_body_size",
                     conf.max_template_bytes + 1024 * 1024,
                     group="oslo_middleware")


class NotAService(cfg.Error):
    """The daemon's own Keystone user cannot act as a service."""


def check_service_user(conf):
    """With Keystone, the daemon's own user ([keystone_authtoken]) must log
    in and hold a service role: its token goes with every caller's to Nova,
    which refuses a service token without one. Raises NotAService (one
    line) otherwise."""
    if conf.api.auth_strategy != "keystone":
        return
    from keystoneauth1 import exceptions

    from imgfac_nova.api import trusts
    group = trusts.GROUP
    try:
        auth = trusts.service_auth(conf)
        access = auth.get_access(trusts.session(conf, auth))
    except (exceptions.ClientException, cfg.Error) as exc:
        raise NotAService("the daemon's Keystone user ([%s]) cannot log in: "
                          "%s" % (group, " ".join(str(exc).split()))) from None
    wanted = set(conf.keystone_authtoken.service_token_roles)
    if not wanted & set(access.role_names):
        raise NotAService(
            "the daemon's Keystone user %s holds %s in project %s but none "
            "of the service roles %s ([%s] service_token_roles): Nova would "
            "refuse its service token; grant one (openstack role add --user "
            "%s --project %s service)" % (
                access.username, ", ".join(sorted(access.role_names)) or
                "no role", access.project_name, ", ".join(sorted(wanted)),
                group, access.username, access.project_name))

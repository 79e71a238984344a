"""Assembling the WSGI application: request ids, then authentication, then
the router."""
import logging

from keystonemiddleware import auth_token
from oslo_middleware import request_id

from imgfac_nova import config
from imgfac_nova import store
from imgfac_nova.api import handlers
from imgfac_nova.api import policy
from imgfac_nova.api import router
from imgfac_nova.api import service as build_service

LOG = logging.getLogger(__name__)


class NoAuth:
    """``auth_strategy = noauth``: every caller is the one operator, with
    the admin role (the project is the X-Project-Id header, if any)."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        environ["HTTP_X_ROLES"] = "admin"
        environ.setdefault("HTTP_X_USER_ID", "operator")
        environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
        return self.application(environ, start_response)


def service(conf):
    """The BuildService on the configured image store."""
    return build_service.BuildService(
        conf, store.ImageStore(config.storage_path(conf)))


def deploy(conf, service):
    """The WSGI application for ``conf`` over ``service``: a request-id
    middleware around the auth middleware around the router."""
    api = handlers.Api(service, policy.enforcer(conf))
    application = router.Router(api.routes())
    if conf.api.auth_strategy == "noauth":
        LOG.warning("auth_strategy = noauth: requests are not authenticated "
                    "and every caller sees every image; use it only for one "
                    "operator on loopback")
        application = NoAuth(application)
    else:
        application = auth_token.AuthProtocol(
            application, {"oslo_config_config": conf})
    return request_id.RequestId(application)

"""The one input policy for REST requests, applied before any plugin sees
them.

The CLI trusts its operator; an API caller is a tenant. So for a caller:
- nothing names the daemon's own files or credentials: no ``cloud``
  parameter or ``@CLOUD`` provider (the daemon's ``clouds.yaml``), no
  provider or credentials file path;
- URLs the daemon opens (install media, checksum files, a provider's
  Keystone and Glance) are http(s) and may not reach loopback, link-local
  or the denied networks (:mod:`novaimagebuilder.netguard`), checked now and
  again on every redirect while the build runs;
- what reaches the daemon's host (a plugin that runs machines on it,
  ``proxy_tunnel``, ``ssh_jump_agent``, URLs and callbacks on denied
  networks) needs its policy rule, admin by default.
"""
import json

from oslo_config import cfg

from imgfac_nova import parameters
from imgfac_nova.api import policy
from imgfac_nova.api import router
from imgfac_nova.plugins import provider_access
from novaimagebuilder import netguard

#: Parameters an API caller may not give, and why.
REFUSED = {
    "cloud": "names one of the daemon's clouds.yaml entries; API builds run "
             "in the caller's project with the caller's token",
}
#: Parameters that reach the daemon's host when true, and their rule.
HOST_SWITCHES = {"proxy_tunnel": policy.PROXY_TUNNEL,
                 "ssh_jump_agent": policy.SSH_JUMP_AGENT}
#: Parameters holding URLs the daemon opens.
URL_PARAMETERS = ("install_kernel", "install_ramdisk")


class BadNetworks(cfg.Error):
    """``url_denied_networks`` holds something that is not a network."""


def check_networks(conf):
    """Raise BadNetworks unless ``url_denied_networks`` are networks (the
    daemon's start-up error, not a 500 on every build request)."""
    try:
        netguard.AddressPolicy(conf.api.url_denied_networks,
                               conf.api.url_allowed_hosts)
    except ValueError as exc:
        raise BadNetworks("[api] url_denied_networks: %s" % exc) from None


class Caller:
    """What one request may do: ``may(rule)`` is decided by the enforcer
    with the caller's project as the target."""

    def __init__(self, enforcer, credentials):
        self.enforcer = enforcer
        self.credentials = credentials
        self.project_id = credentials.get("project_id")

    def may(self, rule):
        try:
            return self.enforcer.enforce(
                rule, {"project_id": self.project_id}, self.credentials)
        except Exception:  # oslo.policy's InvalidScope and the like
            return False

    def require(self, rule, what):
        if not self.may(rule):
            raise router.ApiError(403, "policy does not allow %s (rule %s)"
                                  % (what, rule))


def _true(name, value):
    try:
        return parameters.Parameter(name, "", type="bool").cast(value, "api")
    except parameters.ParameterError as exc:
        raise router.ApiError(400, str(exc)) from None


class InputPolicy:
    """Vets a create request; :meth:`vet` returns the URL check the build
    keeps for the redirects it follows."""

    def __init__(self, conf, plugins):
        check_networks(conf)
        self.denied = conf.api.url_denied_networks
        self.allowed_hosts = conf.api.url_allowed_hosts
        self.plugins = plugins

    def addresses(self, caller, rule, internal=False):
        """The AddressPolicy for ``caller``; ``rule`` lifts the denied
        networks (and, when ``internal``, loopback and link-local too)."""
        lifted = caller.may(rule)
        return netguard.AddressPolicy(
            () if lifted else self.denied, self.allowed_hosts,
            internal=internal and lifted)

    def vet(self, caller, values, template=None, provider=None,
            credentials=None, callbacks=(), os_plugin=None):
        """Refuse (ApiError 400/403, one line) what ``caller`` may not ask
        for; returns the build's URL check."""
        for name, why in REFUSED.items():
            if name in values:
                raise router.ApiError(400, "parameter %r is not accepted "
                                      "through the API: it %s" % (name, why))
        for name, rule in HOST_SWITCHES.items():
            if name in values and _true(name, values[name]):
                caller.require(rule, "%s (it reaches the daemon's host)"
                               % name)
        if os_plugin and getattr(self.plugins.all().get(os_plugin),
                                 "runs_on_host", False):
            caller.require(policy.LOCAL_OS_PLUGIN, "the %s OS plugin (it runs "
                           "machines on the daemon's host)" % os_plugin)
        urls = self.addresses(caller, policy.INTERNAL_URLS)
        for name in URL_PARAMETERS:
            if values.get(name):
                self._check(urls, str(values[name]), "parameter %s" % name)
        if template is not None:
            self._template(urls, template)
        if provider is not None:
            self._provider(urls, provider, credentials)
        hooks = self.addresses(caller, policy.INTERNAL_CALLBACKS,
                               internal=True)
        for url in callbacks:
            reason = hooks.refusal(url, "callback")
            if reason and url.split(":", 1)[0] in ("http", "https"):
                raise router.ApiError(403, "policy does not allow %s (rule "
                                      "%s)" % (reason, policy.INTERNAL_CALLBACKS))
            if reason:
                raise router.ApiError(400, reason)
        return urls.check

    @staticmethod
    def _check(urls, url, what):
        reason = urls.refusal(url, what)
        if reason:
            raise router.ApiError(400, reason)

    def _template(self, urls, template):
        install = template.os.install
        self._check(urls, install.location or "", "template install %s"
                    % install.type)
        checksum = install.checksum
        if checksum and "://" in checksum.value:
            self._check(urls, checksum.value.strip(), "template <%s>"
                        % checksum.type)

    def _provider(self, urls, provider, credentials):
        text = (provider or "").strip()
        if text.startswith("@"):
            raise router.ApiError(400, "provider %s names one of the daemon's "
                                  "clouds.yaml entries; give a provider "
                                  "definition (JSON) and credentials" % text)
        if not text.startswith("{"):
            raise router.ApiError(400, "provider must be a JSON provider "
                                  "definition; the daemon reads no files")
        if credentials is not None and not str(credentials).strip() \
                .startswith("<"):
            raise router.ApiError(400, "credentials must be the credentials "
                                  "XML; the daemon reads no files")
        try:
            definition = provider_access.parse_provider(text).definition
            login = provider_access.parse_credentials(credentials) \
                if credentials else {}
        except provider_access.ProviderError as exc:
            raise router.ApiError(400, str(exc)) from None
        found = [("provider auth_url", definition.get("auth_url")),
                 ("credentials auth_url", login.get("auth_url"))]
        if definition.get("glance-host"):
            found.append(("provider glance-host", "http://%s:%s/" % (
                definition["glance-host"], definition.get("glance-port",
                                                          9292))))
        for what, url in found:
            if url:
                self._check(urls, str(url), what)


def callbacks(values):
    """The ``callbacks`` parameter (popped from ``values``) as a list of
    URLs, or ApiError 400."""
    urls = values.pop("callbacks", None) or []
    if isinstance(urls, str):
        try:
            urls = json.loads(urls) if urls.startswith("[") else [urls]
        except ValueError:
            urls = [urls]
    if not (isinstance(urls, list) and all(isinstance(u, str)
                                           for u in urls)):
        raise router.ApiError(400, "parameters.callbacks must be a list of "
                              "URLs")
    return urls

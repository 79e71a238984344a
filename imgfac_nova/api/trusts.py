"""Keystone trusts: how the daemon acts for a caller whose token may
expire before the work ends (every build it runs or resumes after a
restart, the start-up sweep of a crashed build's project).

At acceptance the caller (trustor) delegates the roles of their token on
the project to the daemon's own ``[keystone_authtoken]`` user (trustee),
with impersonation, as Heat does for its deferred operations. Only the
trust's id is kept, on the build's records (``ImageRecord.trust_id``): it
is of use only to the trustee, who also needs its own password. The trust
is deleted when the last build that holds it ends.
"""
import logging

from keystoneauth1 import exceptions as ksa
from keystoneauth1 import loading
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from imgfac_nova import images

LOG = logging.getLogger(__name__)
GROUP = "keystone_authtoken"
_IDENTITY = {"service_type": "identity", "interface": "public",
             "version": (3, 0)}
#: The scope options of [keystone_authtoken] a trust replaces (Keystone
#: takes one scope).
_SCOPES = ("project_id", "project_name", "domain_id", "domain_name",
           "system_scope")


class TrustError(Exception):
    """A trust could not be made, used or deleted (one line)."""


def _line(exc):
    return " ".join(str(exc).split())


def service_auth(conf, **overrides):
    """The daemon's own auth plugin from ``[keystone_authtoken]``, with
    ``overrides`` of its options."""
    loading.register_auth_conf_options(conf, GROUP)
    return loading.load_auth_from_conf_options(conf, GROUP, **overrides)


def session(conf, auth=None):
    """A keystoneauth Session with ``[keystone_authtoken]``'s TLS and
    timeout settings."""
    section = conf[GROUP]
    return ks_session.Session(
        auth=auth, verify=False if section.insecure else
        (section.cafile or True), timeout=section.http_connect_timeout or 30)


def auth_for(conf, trust_id):
    """A keystoneauth auth plugin of the daemon's service user acting
    through the trust ``trust_id``, that is as the caller in the caller's
    project (impersonation), for as long as the trust lives: it logs in
    again with the daemon's password as its tokens expire, so the caller's
    own token and Keystone's allow_expired window no longer matter. None
    without a trust (noauth daemons, CLI builds). Raises TrustError when
    ``[keystone_authtoken]``'s auth_type cannot take a trust."""
    if not trust_id:
        return None
    return _through(conf, trust_id)


def _options(conf):
    """The option names of ``[keystone_authtoken]``'s auth plugin."""
    loading.register_auth_conf_options(conf, GROUP)
    auth_type = conf[GROUP].auth_type
    return {o.dest for o in loading.get_plugin_loader(
        auth_type).get_options()} if auth_type else set()


def usable(conf):
    """Whether the daemon's own user can act through trusts (it logs in
    with a password)."""
    return {"password", "trust_id"} <= _options(conf)


def _through(conf, trust_id):
    if not usable(conf):
        raise TrustError(
            "the daemon's [%s] auth_type %s cannot act through a Keystone "
            "trust: use password" % (GROUP, conf[GROUP].auth_type))
    overrides = {name: None for name in _SCOPES if name in _options(conf)}
    return service_auth(conf, trust_id=trust_id, **overrides)


class Trusts:
    """Makes and deletes the daemon's builds' trusts."""

    def __init__(self, conf):
        self.conf = conf
        self._trustee = None

    def _trustee_id(self):
        if self._trustee is None:
            auth = service_auth(self.conf)
            self._trustee = auth.get_user_id(session(self.conf, auth))
        return self._trustee

    def create(self, caller_auth, project_id):
        """A trust from the caller of ``caller_auth`` (keystonemiddleware's
        ``keystone.token_auth``) to the daemon's user, of the caller's
        roles on ``project_id``; returns its id, or None when Keystone
        refuses the caller's token the right (an application credential's
        token may not make trusts) or the daemon's user cannot use trusts
        (:func:`usable`): such a build runs on the caller's token alone and
        cannot be resumed after it expires."""
        user = caller_auth.user
        if not usable(self.conf):
            LOG.warning("The daemon's [%s] auth_type %s cannot act through "
                        "a Keystone trust: the build of user %s runs on the "
                        "caller's token alone", GROUP,
                        self.conf[GROUP].auth_type, user.user_id)
            return None
        body = {"trust": {
            "trustor_user_id": user.user_id,
            "trustee_user_id": self._trustee_id(),
            "project_id": project_id, "impersonation": True,
            "roles": [{"name": name} for name in user.role_names]}}
        try:
            answer = session(self.conf).post(
                "/OS-TRUST/trusts", json=body, auth=caller_auth,
                endpoint_filter=_IDENTITY, raise_exc=True)
        except ksa.Forbidden as exc:
            LOG.warning("Keystone refused a trust for user %s in project "
                        "%s (%s): the build runs on the caller's token "
                        "alone", user.user_id, project_id, _line(exc))
            return None
        except ksa.ClientException as exc:
            raise TrustError("Keystone did not make the build's trust: %s"
                             % _line(exc)) from None
        return answer.json()["trust"]["id"]

    def delete(self, trust_id):
        """Delete a trust through itself (the trustor's impersonation may
        delete it); a trust already gone is fine."""
        try:
            session(self.conf).delete(
                "/OS-TRUST/trusts/%s" % trust_id,
                auth=_through(self.conf, trust_id), endpoint_filter=_IDENTITY,
                raise_exc=True)
        except (ksa.NotFound, ksa.Unauthorized):
            LOG.info("Trust %s is gone already", trust_id)
            return
        except (ksa.ClientException, cfg.Error) as exc:
            raise TrustError("deleting trust %s: %s" % (trust_id, _line(exc))) \
                from None
        LOG.info("Deleted trust %s", trust_id)

    def release(self, store, trust_id):
        """Delete ``trust_id`` once none of the builds holding it is still
        PENDING or BUILDING, and forget it on their records; a trust that
        cannot be deleted now stays on them, for the next start-up."""
        if not trust_id:
            return
        holders = store.list({"trust_id": trust_id})
        if any(r.status in images.ACTIVE_STATUSES for r in holders):
            return
        try:
            self.delete(trust_id)
        except TrustError as exc:
            LOG.warning("Keeping trust %s for the next start: %s",
                        trust_id, exc)
            return
        for record in holders:
            store.update(record.identifier, trust_id=None)

"""Whether a build's credentials outlast the build.

A password or an application credential logs in again whenever its token
is about to expire (keystoneauth does); a bare token cannot, so a build
given only a token must be able to end before the token does. (The REST
daemon's builds act through their caller's Keystone trust, which its own
user logs in with again as tokens expire; a caller who could make no trust
has their token sent with the daemon's service token, which the cloud
accepts after it has expired, within Keystone's allow_expired window.)
"""
import datetime

from keystoneauth1 import access
from keystoneauth1.identity import generic
from keystoneauth1.identity import v3

from novaimagebuilder import cloud
from novaimagebuilder import errors

#: Auth plugins that hold a token and nothing to get another with.
BARE_TOKENS = (generic.Token, v3.Token)


def _duration(seconds):
    seconds = max(0, round(seconds))
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%d h %d min" % (seconds // 3600, seconds % 3600 // 60)


def check_lasts(session, seconds, what):
    """A one-line BuildError when ``session`` authenticates with a bare
    token that expires before ``seconds`` from now (``what`` names that
    time: "the install timeout (3600 s)"); nothing otherwise."""
    if not isinstance(session.auth, BARE_TOKENS):
        return
    access = session.auth.auth_ref or session.auth.get_access(session)
    if access.expires is None:
        return
    left = (access.expires -
            datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if left < seconds:
        raise errors.BuildError(
            "the token expires in %s, before %s could end, and a token "
            "cannot be renewed: give a password or an application "
            "credential (or a token with more time left)" % (
                _duration(left), what))


def caller_expiry(auth):
    """When the caller's token expires, for ``auth`` a daemon's build on
    its caller's token alone (keystonemiddleware's plugin of the request:
    the caller's token with the daemon's service token); None otherwise."""
    user = getattr(auth, "user", None)
    return user.expires if isinstance(user, access.AccessInfo) else None


def _now(now):
    return now or datetime.datetime.now(datetime.timezone.utc)


#: What a caller whose token runs out of the allow_expired window can do.
_REMEDY = ("call with a token that may make a Keystone trust (not an "
           "application credential's), or have Keystone's [token] "
           "allow_expired_window lengthened (and the daemon's [api] "
           "allow_expired_window with it)")


def window_warning(auth, seconds, window, what, now=None):
    """One line when ``auth`` is a caller's token (:func:`caller_expiry`)
    that the cloud will refuse before ``seconds`` from now (``what`` names
    that time) are over: it expires, and Keystone's allow_expired window of
    ``window`` seconds past that ends; None otherwise."""
    expires = caller_expiry(auth)
    if expires is None:
        return None
    left = (expires - _now(now)).total_seconds() + window
    if left >= seconds:
        return None
    return ("the build runs on its caller's token (no Keystone trust): the "
            "cloud accepts it for %s more (it expires in %s, then "
            "Keystone's allow_expired window of %s), less than %s: past "
            "that the build fails; %s" % (
                _duration(left), _duration(left - window),
                _duration(window), what, _REMEDY))


def refused_line(auth, window, accepted, now=None):
    """The one line of a build on its caller's token (:func:`caller_expiry`)
    that the cloud refused (HTTP 401) after the token expired, naming how
    long after the build's acceptance (``accepted``, a datetime) and the
    token's expiry; None when ``auth`` is no such token or had not expired
    (the refusal has another cause)."""
    expires = caller_expiry(auth)
    now = _now(now)
    if expires is None or now < expires:
        return None
    past = (now - expires).total_seconds()
    beyond = "beyond Keystone's allow_expired window (%s)" % \
        _duration(window) if past >= window else \
        "and the cloud refused it (HTTP 401) within the %s the daemon's " \
        "[api] allow_expired_window says (revoked, or Keystone's window " \
        "is shorter)" % _duration(window)
    return ("the caller's token expired %s ago, %s after the build was "
            "accepted, %s: %s" % (
                _duration(past), _duration(
                    (expires - accepted).total_seconds()), beyond, _REMEDY))


def build_warning(auth, window, parameters):
    """:func:`window_warning` for a build with ``parameters`` (its install
    ``timeout``, or a push's ``upload_timeout``)."""
    name = "timeout" if "timeout" in parameters else "upload_timeout"
    seconds = parameters.get(name)
    if not seconds:
        return None
    return window_warning(auth, seconds, window, "its %s (%d s)" % (
        name, seconds))


def explain_refusal(reason, auth, window, accepted):
    """``reason`` (a build's one-line failure) with a refusal of the
    credentials said as :func:`refused_line` says it, for a build on its
    caller's token accepted at ``accepted`` (ISO 8601)."""
    if cloud.REFUSED not in reason:
        return reason
    line = refused_line(auth, window,
                        datetime.datetime.fromisoformat(accepted))
    return reason.replace(cloud.REFUSED, line) if line else reason

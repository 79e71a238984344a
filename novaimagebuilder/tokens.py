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

from keystoneauth1.identity import generic
from keystoneauth1.identity import v3

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

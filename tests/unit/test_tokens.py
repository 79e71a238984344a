"""tokens: a bare token must outlast the build's timeout; a daemon's build on
its caller's token says when Keystone's allow_expired window ends it."""
import datetime

import pytest
from keystoneauth1 import access
from keystoneauth1 import session
from keystoneauth1.identity import v3

from novaimagebuilder import errors
from novaimagebuilder import tokens


def _session(plugin, seconds_left):
    expires = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=seconds_left)
    plugin.auth_ref = access.create(body={"token": {
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "methods": ["token"], "user": {"id": "u", "name": "u"}}},
        auth_token="tok")
    return session.Session(auth=plugin)


def _token():
    return v3.Token("http://keystone:5000/v3", "tok", project_id="p")


def _password():
    return v3.Password("http://keystone:5000/v3", username="u",
                       password="pw", user_domain_id="default",
                       project_id="p")


@pytest.mark.parametrize("left,words", [
    (45, "45 s"), (3000, "50 min"), (3 * 3600 + 125, "3 h 2 min")])
def test_a_token_that_ends_first_is_one_line_naming_its_time(left, words):
    with pytest.raises(errors.BuildError) as caught:
        tokens.check_lasts(_session(_token(), left), 4 * 3600,
                           "the install timeout")
    assert str(caught.value) == (
        "the token expires in %s, before the install timeout could end, "
        "and a token cannot be renewed: give a password or an application "
        "credential (or a token with more time left)" % words)


def test_a_token_with_time_enough_passes():
    tokens.check_lasts(_session(_token(), 7200), 3600, "the timeout")


def test_a_password_logs_in_again_whatever_its_token_has_left():
    tokens.check_lasts(_session(_password(), 45), 3600, "the timeout")


def _caller(seconds_left):
    """keystonemiddleware's plugin of a request whose caller's token
    expires in ``seconds_left`` (a daemon's build on that token alone)."""
    from keystonemiddleware.auth_token import _user_plugin
    return _user_plugin.UserAuthPlugin(
        _session(_token(), seconds_left).auth.auth_ref, None)


def _ago(**delta):
    return (datetime.datetime.now(datetime.timezone.utc) -
            datetime.timedelta(**delta)).isoformat()


def test_a_build_that_could_outlast_the_window_says_so_in_one_line():
    line = tokens.build_warning(_caller(600), 3000, {"timeout": 3600})
    assert line.startswith(
        "the build runs on its caller's token (no Keystone trust): the cloud "
        "accepts it for 60 min more (it expires in 10 min, then Keystone's "
        "allow_expired window of 50 min), less than its timeout (3600 s): "
        "past that the build fails; call with a token that may make a "
        "Keystone trust (not an application credential's), or have "
        "Keystone's [token] allow_expired_window lengthened"), line
    assert "\n" not in line
    assert tokens.build_warning(_caller(600), 3000, {
        "upload_timeout": 7200}).endswith("allow_expired_window with it)")


@pytest.mark.parametrize("auth,parameters", [  # auth made as the test runs
    (lambda: _caller(600), {"timeout": 3000}),  # 10 min + 50 min > 50 min
    (lambda: _session(_token(), 60).auth, {"timeout": 7200}),  # no caller's
    (lambda: _caller(60), {}),  # no timeout known
])
def test_no_warning_when_the_window_outlasts_the_build(auth, parameters):
    assert tokens.build_warning(auth(), 3000, parameters) is None


def test_a_refusal_past_the_window_names_the_expiry_and_the_acceptance():
    caller = _caller(-50 * 3600)  # expired 50 h ago
    accepted = _ago(hours=51)
    line = tokens.explain_refusal(
        "listing servers: the cloud refused the credentials (HTTP 401)",
        caller, 48 * 3600, accepted)
    assert line.startswith(
        "listing servers: the caller's token expired 50 h 0 min ago, "
        "60 min after the build was accepted, beyond Keystone's "
        "allow_expired window (48 h 0 min): call with a token that may make "
        "a Keystone trust"), line


def test_a_refusal_within_the_window_says_it_may_be_shorter_or_revoked():
    line = tokens.explain_refusal(
        "the cloud refused the credentials (HTTP 401)", _caller(-30), 3600,
        _ago(seconds=90))
    assert line.startswith(
        "the caller's token expired 30 s ago, 60 s after the build was "
        "accepted, and the cloud refused it (HTTP 401) within the 60 min "
        "the daemon's [api] allow_expired_window says (revoked, or "
        "Keystone's window is shorter): "), line


@pytest.mark.parametrize("reason,auth", [
    # made as the test runs: one made at collection to last 60 s may have
    # expired by then (the tiers run together)
    ("the cloud refused the credentials (HTTP 401)", lambda: _caller(60)),
    ("the cloud refused the credentials (HTTP 401)", _password),
    ("quota exceeded: cores", lambda: _caller(-7200)),
])
def test_other_failures_are_left_as_they_are(reason, auth):
    assert tokens.explain_refusal(reason, auth(), 60, _ago()) == \
        reason

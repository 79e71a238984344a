"""tokens.check_lasts: a bare token must outlast the build's timeout."""
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

"""Builds that outlive their token, against a Keystone of the test cloud
whose tokens live 15 s (shortkeystone.py; the shared Keystone is left
as it is): the CLI with a password logs in again as it goes; the CLI given
only a token that would expire first refuses in one line; the daemon's
build acts through its caller's trust and outlives the token and Keystone's
allow_expired window (an expired caller's token with the daemon's service
token still reaches the cloud within that window: what builds of callers
whose token may make no trust act with). A token the test cloud's own Keystone gives
lives an hour, as by default."""
import datetime
import os
import time
import uuid

import pytest
import requests
import yaml

from imgfac_nova import images
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.machines import nova_connect
from tests import poll
from tests.functional import builds
from tests.functional import databases
from tests.functional.apidaemon import KEYSTONE
from tests.functional.apidaemon import _post_base
from tests.functional.shortkeystone import short_keystone  # noqa: F401


def _clouds(test_cloud, keystone, directory, **auth):
    """A clouds.yaml whose ``short`` entry is the imgfac user's, logging
    in at ``keystone`` (a URL; ``auth`` replaces its credentials)."""
    with open(test_cloud.clouds_yaml) as handle:
        clouds = yaml.safe_load(handle)
    entry = clouds["clouds"]["imgfac-test"]
    entry["auth"]["auth_url"] = keystone + "/v3"
    if auth:
        for name in ("username", "password", "user_domain_name"):
            entry["auth"].pop(name)
        entry["auth"].update(auth)
        entry["auth_type"] = "v3token"
    path = directory / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"short": entry}}))
    return path


def _env(cloud_env, clouds_yaml):
    return dict(cloud_env, OS_CLIENT_CONFIG_FILE=str(clouds_yaml),
                OS_CLOUD="short")


def _token(test_cloud, keystone):
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    with open(test_cloud.clouds_yaml) as handle:
        auth = dict(yaml.safe_load(handle)["clouds"]["imgfac-test"]["auth"])
    auth["auth_url"] = keystone + "/v3"
    return session.Session(auth=v3.Password(**auth)).get_token()


def test_a_token_that_expires_before_the_install_timeout_is_refused(
        test_cloud, cloud_env, conn, tmp_path):
    """A token of the test cloud's Keystone lives an hour, as by default:
    less than the default install timeout (3600 s) has left."""
    clouds = _clouds(test_cloud, KEYSTONE, tmp_path,
                     token=_token(test_cloud, KEYSTONE))
    config, store = builds.write_config(tmp_path)
    done = builds.imgfac(config, "base_image", *builds.NOVA_PARAMS,
                         builds.write_template(tmp_path),
                         env=_env(cloud_env, clouds), timeout=300)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "the token expires in 59 min, before the build's install " \
        "timeout (3600 s) could end" in line, line
    assert "password or an application credential" in line
    assert builds.records(store) == {}
    assert builds.made_by(conn, done) == []


@pytest.mark.parametrize("plugin", ["openstack", "formats"])
def test_a_push_to_a_provider_with_a_token_that_ends_first_is_refused(
        test_cloud, tmp_path, monkeypatch, plugin):
    from imgfac_nova import config
    from imgfac_nova import parameters
    from imgfac_nova.plugins import manager
    clouds = _clouds(test_cloud, KEYSTONE, tmp_path,
                     token=_token(test_cloud, KEYSTONE))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    conf = config.load([builds.write_config(tmp_path)[0]])
    pushing = manager.PluginManager(conf).get(plugin)
    typed = parameters.resolve(pushing.parameters,
                               {"upload_timeout": "7200"}, plugin)
    with pytest.raises(errors.BuildError) as refused:
        pushing.check_provider("@short", None, typed)
    assert str(refused.value).startswith("the token expires in ")
    assert "before the push's upload timeout (7200 s) could end" in \
        str(refused.value)
    typed["upload_timeout"] = 5
    assert pushing.check_provider("@short", None, typed) == "@short"


@pytest.mark.slow  # a whole Nova build with a login before each call
@pytest.mark.usefixtures("nova_base_image")  # its JEOS: the builds reuse it
def test_a_password_build_logs_in_again_as_its_tokens_expire(
        short_keystone, test_cloud, cloud_env, conn, tmp_path):  # noqa: F811
    clouds = _clouds(test_cloud, short_keystone.url, tmp_path)
    config, store = builds.write_config(tmp_path)
    logins = short_keystone.logins()
    started = time.monotonic()
    done = builds.imgfac(config, "base_image", *builds.with_install_script(
        builds.NOVA_PARAMS, tmp_path), builds.write_template(tmp_path),
        env=_env(cloud_env, clouds))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    result = builds.record(done)
    assert result["status"] == images.COMPLETE
    assert took > 2 * short_keystone.lifetime, took
    # A token lasts 15 s, less than keystoneauth's two minutes' margin:
    # it logs in again before each call.
    assert short_keystone.logins() - logins > 2
    builds.delete(config, result, _env(cloud_env, clouds), conn)


@pytest.mark.usefixtures("nova_base_image")  # its JEOS: the builds reuse it
def test_a_daemon_build_outlives_its_callers_token_and_the_window(
        test_cloud, make_daemon, service_user, conn, tmp_path):
    """The daemon builds through the caller's trust: once a build is
    accepted, its caller's token may be refused by the cloud altogether,
    service token or not, as it is past Keystone's allow_expired window
    (48 h in the test cloud, as by default: the test revokes the token,
    which the cloud then refuses just as one past the window; Keystone
    revokes only a token that has not expired), and the build completes."""
    daemon = make_daemon()
    with open(builds.write_template(tmp_path)) as handle:
        template = handle.read()
    parameters = dict(zip(builds.NOVA_PARAMS[1::3], builds.NOVA_PARAMS[2::3]))
    token = _token(test_cloud, KEYSTONE)
    caller = _with_service_token(token, service_user)
    image = _post_base(daemon, token, template,
                       install_script=builds.INSTALL_SCRIPT, **parameters)
    assert _stored(daemon, image["id"]).trust_id
    revoked = requests.delete(KEYSTONE + "/v3/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token}, timeout=30)
    assert revoked.status_code == 204, revoked.text
    # what a build on the caller's token would now meet in the cloud
    with pytest.raises(errors.BuildError, match="refused the credentials "
                       r"\(HTTP 401\)"):
        cloud.call("listing servers", lambda: list(
            nova_connect.connect(auth=caller).compute.servers()))
    assert _stored(daemon, image["id"]).status == images.BUILDING, \
        "the build ended before its caller's token was refused"
    record = poll.wait_for(
        lambda: (lambda r: r if r.status not in images.ACTIVE_STATUSES
                 else None)(_stored(daemon, image["id"])),
        1800, "the build through the API", interval=2)
    assert record.status == images.COMPLETE, record.status_detail
    glance_id = record.properties[images.GLANCE_ID_PROPERTY]
    assert conn.image.get_image(glance_id).status == "active"
    conn.image.delete_image(glance_id)


def _with_service_token(token, service_user):
    """keystonemiddleware's auth plugin of a request with ``token``: the
    caller's token with the daemon's service token, as a build on the
    caller's token alone reaches the cloud."""
    from keystoneauth1 import access
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from keystonemiddleware.auth_token import _user_plugin
    service = v3.Password(auth_url=KEYSTONE + "/v3",
                          user_domain_name="Default",
                          project_domain_name="Default", **service_user)
    service_session = session.Session(auth=service)
    validated = service_session.get(KEYSTONE + "/v3/auth/tokens", headers={
        "X-Subject-Token": token}).json()  # as auth_token does
    return _user_plugin.UserAuthPlugin(
        access.create(body=validated, auth_token=token),
        service.get_access(service_session), session=service_session,
        auth=service)


def test_an_expired_callers_token_with_the_service_token_reaches_the_cloud(
        short_keystone, test_cloud, service_user):  # noqa: F811
    """What a daemon's build (target and provider steps too) has in hand
    after its caller's token expired: keystonemiddleware's auth plugin of
    the request, the caller's token with the daemon's service token. Nova,
    Neutron, Cinder and Glance (a download and an upload, as target and
    provider steps make) accept it; the bare expired token they refuse."""
    from keystoneauth1.identity import v3
    token = _token(test_cloud, short_keystone.url)
    expires = time.monotonic() + short_keystone.lifetime
    caller = _with_service_token(token, service_user)
    time.sleep(max(0, expires + 2 - time.monotonic()))
    conn = nova_connect.connect(auth=caller)
    assert isinstance(list(conn.compute.servers()), list)
    assert list(conn.network.networks())
    assert isinstance(list(conn.block_storage.volumes()), list)
    data = os.urandom(1024 * 1024)
    image = conn.image.create_image(
        name="imgfac-ft-expired-" + uuid.uuid4().hex[:6], disk_format="raw",
        container_format="bare", data=data)
    try:
        assert conn.image.download_image(image).content == data
    finally:
        conn.image.delete_image(image)
    with pytest.raises(errors.BuildError, match="HTTP 40[14]"):
        nova_connect.connect(auth=v3.Token(KEYSTONE + "/v3", token,
                                           project_id=conn.current_project_id))


def test_a_refusal_of_an_expired_callers_token_is_said_as_such(
        short_keystone, test_cloud, service_user):  # noqa: F811
    """What a daemon's build on its caller's token alone meets past
    Keystone's allow_expired window: the cloud's refusal, said in one line
    naming the token's expiry. (The test cloud's window is 48 h: the token,
    of the 15 s Keystone, is revoked before the cloud ever saw it, which
    the cloud then refuses just as one past the window; the daemon is told
    a window of 1 s.)"""
    from novaimagebuilder import tokens
    accepted = datetime.datetime.now(datetime.timezone.utc).replace(
        microsecond=0)
    token = _token(test_cloud, short_keystone.url)
    expires = time.monotonic() + short_keystone.lifetime
    caller = _with_service_token(token, service_user)
    revoked = requests.delete(KEYSTONE + "/v3/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token}, timeout=30)
    assert revoked.status_code == 204, revoked.text
    time.sleep(max(0, expires + 2 - time.monotonic()))
    with pytest.raises(errors.BuildError) as refused:
        cloud.call("listing servers", lambda: list(
            nova_connect.connect(auth=caller).compute.servers()))
    line = tokens.explain_refusal(str(refused.value), caller, 1,
                                  accepted.isoformat())
    assert line.startswith("listing servers: the caller's token expired "), \
        line
    assert " after the build was accepted, beyond Keystone's allow_expired " \
        "window (1 s): call with a token that may make a Keystone trust" \
        in line, line


def _stored(daemon, identifier):
    return databases.image_store(daemon.store).get(identifier)


def test_a_build_on_a_token_that_may_make_no_trust_says_when_it_ends(
        make_daemon, conn, test_cloud):
    """A caller with an application credential's token (Keystone makes no
    trust of it): the build runs on that token with the daemon's service
    token, and when its timeout could outlast the token's expiry plus the
    allow_expired window (the daemon's [api] allow_expired_window, 48 h as
    Keystone's default), its log says so in one line."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from tests.functional.apidaemon import _call
    from tests.functional.apidaemon import _wait
    credential = conn.identity.create_application_credential(
        conn.current_user_id, "imgfac-ft-notrust-" + uuid.uuid4().hex[:6])
    try:
        token = session.Session(auth=v3.ApplicationCredential(
            KEYSTONE + "/v3", application_credential_id=credential.id,
            application_credential_secret=credential.secret)).get_token()
        daemon = make_daemon()
        image = _post_base(daemon, token, timeout=50 * 3600)
        _wait(daemon, token, image["id"], ("COMPLETE",))
        assert _stored(daemon, image["id"]).trust_id is None
        log = _call("GET", "%s/base_images/%s/build_log" % (
            daemon.url, image["id"]), token).text
        [line] = [line for line in log.splitlines()
                  if "runs on its caller's token" in line]
        assert "the cloud accepts it for 48 h 59 min more (it expires in " \
            "59 min, then Keystone's allow_expired window of 48 h 0 min), " \
            "less than its timeout (180000 s): past that the build fails; " \
            "call with a token that may make a Keystone trust" in line, line
    finally:
        conn.identity.delete_application_credential(
            conn.current_user_id, credential)

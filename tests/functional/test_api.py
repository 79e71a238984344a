"""The imgfac-nova-api daemon as a real process on loopback, with real
Keystone tokens from the test cloud."""
import os
import signal
import socket
import subprocess
import sys
import uuid

import openstack.config
import pytest
import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests import plugins
from tests import poll
from tests.functional import builds
from tests.functional.test_nova_build import build_resources
from tests.unit import httpserver

KEYSTONE = "http://127.0.0.1:5000"

#: A template the test OS plugin builds in a few seconds (no cloud).
TESTOS_TEMPLATE = """<template>
  <name>api-ft</name>
  <os><name>TestOS</name><version>1</version><arch>x86_64</arch>
    <install type='url'><url>http://127.0.0.1:8090/installer/</url></install>
    <rootpw>ft-secret</rootpw></os>
  <description>imgfac-nova-api functional test</description>
</template>
"""


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _auth(cloud_config):
    return cloud_config.config["auth"]


class Daemon:
    """One imgfac-nova-api process; :meth:`start` (re)starts it."""

    def __init__(self, directory, env, keystone_auth, max_builds):
        os.makedirs(str(directory), exist_ok=True)
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d/imagefactory" % self.port
        self.store = os.path.join(str(directory), "store")
        self.config = os.path.join(str(directory), "api.conf")
        self.log = os.path.join(str(directory), "api.log")
        self.env = env
        with open(self.config, "w") as handle:
            handle.write(
                "[DEFAULT]\nstorage_path = %s\n"
                "[api]\nbind_port = %d\nauth_strategy = keystone\n"
                "max_concurrent_builds = %d\ncallback_retry_seconds = 60\n"
                "[keystone_authtoken]\nwww_authenticate_uri = %s\n"
                "auth_url = %s\nauth_type = password\nusername = %s\n"
                "password = %s\nproject_name = %s\nuser_domain_name = Default\n"
                "project_domain_name = Default\n"
                % (self.store, self.port, max_builds, KEYSTONE, KEYSTONE,
                   keystone_auth["username"], keystone_auth["password"],
                   keystone_auth["project_name"]))
        self.proc = None

    def start(self):
        log = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgfac_nova.api.server", "--config-file",
             self.config], env=self.env, cwd=builds.REPO, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()

        def listening():
            assert self.proc.poll() is None, self.read_log()
            try:
                return requests.get(self.url, timeout=5).status_code == 401
            except requests.ConnectionError:
                return False
        poll.wait_for(listening, 60, "imgfac-nova-api to listen", 0.2)
        return self

    def read_log(self):
        with open(self.log) as handle:
            return handle.read()

    def stop(self, sig=signal.SIGTERM, timeout=600):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    return plugins.install(str(tmp_path_factory.mktemp("site")))


@pytest.fixture
def daemon_env(test_cloud, plugin_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(test_cloud.exports)
    env["PYTHONPATH"] = os.pathsep.join([plugin_path, builds.REPO])
    return env


@pytest.fixture(scope="module")
def clouds(test_cloud):
    return openstack.config.OpenStackConfig(
        config_files=[test_cloud.clouds_yaml], load_envvars=False)


@pytest.fixture(scope="module")
def service_user(admin_conn):
    """The daemon's own Keystone account, as a deployment gives it: a user
    with the service role in the service project (auth_token validates
    tokens with it, and its token goes with the caller's to the cloud)."""
    name = "imgfac-ft-api-svc-" + uuid.uuid4().hex[:6]
    password = uuid.uuid4().hex
    project = admin_conn.identity.find_project("service", domain_id="default")
    user = admin_conn.identity.create_user(name=name, password=password,
                                           domain_id="default",
                                           default_project_id=project.id)
    admin_conn.identity.assign_project_role_to_user(
        project, user, admin_conn.identity.find_role("service"))
    yield {"username": name, "password": password, "project_name": "service"}
    admin_conn.identity.delete_user(user)


@pytest.fixture
def make_daemon(tmp_path, daemon_env, service_user):
    made = []

    def make(max_builds=2):
        daemon = Daemon(tmp_path / ("d%d" % len(made)), daemon_env,
                        service_user, max_builds)
        made.append(daemon)
        return daemon.start()
    yield make
    for daemon in made:
        daemon.stop()


def _token(auth):
    plugin = v3.Password(auth_url=KEYSTONE + "/v3",
                         username=auth["username"], password=auth["password"],
                         project_name=auth["project_name"],
                         user_domain_name="Default",
                         project_domain_name="Default")
    return ks_session.Session(auth=plugin).get_token()


@pytest.fixture(scope="module")
def tokens(clouds, admin_conn):
    """Tokens of imgfac (project imgfac), admin, and a member of a second
    project made for this module."""
    name = "imgfac-ft-api-" + uuid.uuid4().hex[:6]
    password = uuid.uuid4().hex
    project = admin_conn.identity.create_project(name=name,
                                                 domain_id="default")
    user = admin_conn.identity.create_user(name=name, password=password,
                                           domain_id="default",
                                           default_project_id=project.id)
    member = admin_conn.identity.find_role("member")
    admin_conn.identity.assign_project_role_to_user(project, user, member)
    try:
        yield {"imgfac": _token(_auth(clouds.get_one(cloud="imgfac-test"))),
               "admin": _token(_auth(clouds.get_one(
                   cloud="imgfac-test-admin"))),
               "other": _token({"username": name, "password": password,
                                "project_name": name})}
    finally:
        admin_conn.identity.delete_user(user)
        admin_conn.identity.delete_project(project)


def _call(method, url, token=None, **kwargs):
    headers = {"X-Auth-Token": token} if token else {}
    return requests.request(method, url, headers=headers, timeout=60,
                            **kwargs)


def _post_base(daemon, token, template=TESTOS_TEMPLATE, **parameters):
    answer = _call("POST", daemon.url + "/base_images", token, json={
        "base_image": {"template": template, "parameters": parameters}})
    assert answer.status_code == 202, answer.text
    return answer.json()["base_image"]


def _image(daemon, token, image_id):
    answer = _call("GET", daemon.url + "/base_images/" + image_id, token)
    assert answer.status_code == 200, answer.text
    return answer.json()["base_image"]


def _wait(daemon, token, image_id, statuses, timeout=120):
    return poll.wait_for(
        lambda: (lambda i: i if i["status"] in statuses else None)(
            _image(daemon, token, image_id)),
        timeout, "image %s to be %s" % (image_id, "/".join(statuses)), 0.1)


def test_no_token_or_a_bad_token_is_401(make_daemon, tokens):
    daemon = make_daemon()
    for token in (None, "not-a-token"):
        for path in ("", "/base_images", "/plugins"):
            answer = _call("GET", daemon.url + path, token)
            assert answer.status_code == 401, answer.text
            assert answer.headers["WWW-Authenticate"].startswith(
                "Keystone uri=")
    assert _call("GET", daemon.url, tokens["imgfac"]).json()[
        "api_version"] == "2.0"
    assert "(auth_strategy keystone," in daemon.read_log()


def test_another_project_gets_404_and_an_empty_list(make_daemon, tokens):
    daemon = make_daemon()
    image = _post_base(daemon, tokens["imgfac"])
    _wait(daemon, tokens["imgfac"], image["id"], ("COMPLETE",))
    for path in ("/base_images/%s" % image["id"],
                 "/base_images/%s/raw_image" % image["id"],
                 "/base_images/%s/target_images" % image["id"]):
        answer = _call("GET", daemon.url + path, tokens["other"])
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == 404
    assert _call("GET", daemon.url + "/base_images", tokens["other"]).json() \
        == {"base_images": []}
    assert _call("DELETE", daemon.url + "/base_images/" + image["id"],
                 tokens["other"]).status_code == 404
    mine = _call("GET", daemon.url + "/base_images", tokens["imgfac"]).json()
    assert [i["base_image"]["id"] for i in mine["base_images"]] == \
        [image["id"]]
    # The admin role sees every project's images.
    assert _image(daemon, tokens["admin"], image["id"])["id"] == image["id"]
    # raw_image downloads the same bytes as the .body.
    raw = _call("GET", daemon.url + "/base_images/%s/raw_image" % image["id"],
                tokens["imgfac"])
    with open(os.path.join(daemon.store, image["id"] + ".body"), "rb") as f:
        assert raw.content == f.read()
    assert raw.headers["Content-Length"] == str(len(raw.content))


def test_callbacks_get_every_status_in_order_after_a_500(make_daemon, tokens):
    daemon = make_daemon()
    with httpserver.CallbackReceiver(answers=[500]) as receiver:
        image = _post_base(daemon, tokens["imgfac"], steps=3, step_seconds=1,
                           callbacks=[receiver.url("ci", "hook:pa55word")])
        _wait(daemon, tokens["imgfac"], image["id"], ("COMPLETE",))
        poll.wait_for(lambda: receiver.statuses()[-1:] == [
            (image["id"], "COMPLETE")], 60, "the COMPLETE callback", 0.2)
        received = receiver.received
    assert received[0]["code"] == 500
    assert received[0]["body"]["base_image"]["status"] == "PENDING"
    assert receiver.statuses() == [(image["id"], s) for s in
                                   ("PENDING", "BUILDING", "COMPLETE")]
    assert all(r["authorization"].startswith("Basic ") for r in received)
    assert "pa55word" not in daemon.read_log()


def test_three_builds_with_two_slots_run_two_then_one(make_daemon, tokens):
    daemon = make_daemon(max_builds=2)
    ids = [_post_base(daemon, tokens["imgfac"], steps=4, step_seconds=s)["id"]
           for s in (1.0, 2.0, 1.0)]
    seen = {"most": 0, "third started after": None}

    def all_complete():
        now = [_image(daemon, tokens["imgfac"], i)["status"] for i in ids]
        seen["most"] = max(seen["most"], now.count("BUILDING"))
        if now[2] == "BUILDING" and seen["third started after"] is None:
            seen["third started after"] = now[:2]
        assert "FAILED" not in now
        if seen["third started after"] is None:
            assert now[2] == "PENDING"
        return now == ["COMPLETE"] * 3
    poll.wait_for(all_complete, 120, "the three builds", interval=0.1)
    assert seen["most"] == 2
    assert "COMPLETE" in seen["third started after"]


def test_sigterm_cancels_builds_and_exits(make_daemon, tokens):
    daemon = make_daemon(max_builds=1)
    running = _post_base(daemon, tokens["imgfac"], steps=100, step_seconds=1)
    waiting = _post_base(daemon, tokens["imgfac"])
    _wait(daemon, tokens["imgfac"], running["id"], ("BUILDING",))
    assert daemon.stop(signal.SIGTERM, timeout=60) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(daemon.url, timeout=5)
    daemon.start()
    stopped = _image(daemon, tokens["imgfac"], running["id"])
    assert stopped["status"] == "FAILED"
    assert stopped["status_detail"]["error"].startswith("interrupted at ")
    never = _image(daemon, tokens["imgfac"], waiting["id"])
    assert (never["status"], never["status_detail"]["error"]) == \
        ("FAILED", "cancelled before it started")


# -- builds in the test cloud --------------------------------------------------

def _cloud_build(daemon, token, tmp_path, **extra):
    with open(os.path.join(builds.REPO, "examples", "test-cloud.tdl")) as f:
        template = f.read()
    import json
    with open(os.path.join(builds.REPO, "examples",
                           "test-cloud.parameters.json")) as f:
        parameters = json.load(f)
    parameters.update(install_script=builds.INSTALL_SCRIPT, **extra)
    return _post_base(daemon, token, template, **parameters)


def test_kill_9_mid_build_then_restart_fails_it_and_sweeps(
        make_daemon, tokens, conn, tmp_path):
    daemon = make_daemon()
    image = _cloud_build(daemon, tokens["imgfac"], tmp_path)
    assert image["status"] in ("PENDING", "BUILDING")
    poll.wait_for(lambda: any(k == "server" for k, _ in build_resources(
        conn, image["id"])), 600, "the build's installer server", 2)
    daemon.stop(signal.SIGKILL)
    assert build_resources(conn, image["id"]) != []
    daemon.start()
    failed = _image(daemon, tokens["imgfac"], image["id"])
    assert failed["status"] == "FAILED"
    assert failed["status_detail"]["error"].startswith(
        "the build process ended unexpectedly at ")
    assert build_resources(conn, image["id"]) == []
    assert "Removed server " in daemon.read_log()


@pytest.mark.usefixtures("nova_base_image")  # its JEOS: this build reuses it
def test_base_build_in_the_cloud_reports_live_progress(make_daemon, tokens,
                                                       conn, tmp_path):
    daemon = make_daemon()
    with open(builds.write_template(tmp_path)) as handle:
        template = handle.read()
    parameters = dict(zip(builds.NOVA_PARAMS[1::3], builds.NOVA_PARAMS[2::3]))
    image = _post_base(daemon, tokens["imgfac"], template,
                       install_script=builds.INSTALL_SCRIPT, **parameters)
    seen = []

    def finished():
        now = _image(daemon, tokens["imgfac"], image["id"])
        if not seen or seen[-1] != (now["status"], now["percent_complete"]):
            seen.append((now["status"], now["percent_complete"]))
        return now if now["status"] in ("COMPLETE", "FAILED") else None
    now = poll.wait_for(finished, 1800, "the build through the API",
                        interval=2)
    assert now["status"] == "COMPLETE", now["status_detail"]
    building = [p for s, p in seen if s == "BUILDING"]
    assert len(set(building)) >= 3 and building == sorted(building), seen
    glance_id = now["properties"]["x-image-properties-glance_id"]
    glance = conn.image.get_image(glance_id)
    assert glance.status == "active"
    assert glance.owner == conn.current_project_id
    print("progress seen through the API: %s (JEOS cache: %s)" % (
        seen, now["properties"].get("jeos_cache")))
    deleted = _call("DELETE", daemon.url + "/base_images/" + image["id"],
                    tokens["imgfac"])
    assert deleted.status_code == 204, deleted.text
    assert conn.image.find_image(glance_id) is None

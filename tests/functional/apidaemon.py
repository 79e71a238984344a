"""The imgfac-nova-api daemon as a real process on loopback, with real
Keystone tokens from the test cloud: the process, its callers' tokens and
request helpers, for the API's functional tests (conftest.py imports the
fixtures)."""
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
from tests.functional import databases

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
                # the test cloud's media server: the operator's mirror
                "url_allowed_hosts = 127.0.0.1:8090\n"
                "[keystone_authtoken]\nwww_authenticate_uri = %s\n"
                "auth_url = %s\nauth_type = password\nusername = %s\n"
                "password = %s\nproject_name = %s\nuser_domain_name = Default\n"
                "project_domain_name = Default\n"
                % (self.store, self.port, max_builds, KEYSTONE, KEYSTONE,
                   keystone_auth["username"], keystone_auth["password"],
                   keystone_auth["project_name"]))
            handle.write(databases.config_section(self.store))
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

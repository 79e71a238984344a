"""Trust boundaries of the real imgfac-nova-api daemon with real Keystone
tokens: a tenant gets nothing of the daemon's reach, readers only read, and
the daemon's own user must be a service user."""
import os
import socket
import subprocess
import sys
import uuid

import pytest

from novaimagebuilder import cloud
from tests.functional import builds
from tests.functional.apidaemon import TESTOS_TEMPLATE
from tests.functional.apidaemon import Daemon
from tests.functional.apidaemon import _call
from tests.functional.apidaemon import _post_base
from tests.functional.apidaemon import _token
from tests.functional.apidaemon import _wait

ISO_TEMPLATE = TESTOS_TEMPLATE.replace(
    "<install type='url'><url>http://127.0.0.1:8090/installer/</url>",
    "<install type='iso'><iso>%s</iso>")
CREDENTIALS = ("<provider_credentials><openstack_credentials><username>u"
               "</username><password>p</password></openstack_credentials>"
               "</provider_credentials>")


def _user(admin_conn, role_names, project=None):
    """A new user with ``role_names`` in a project (a new one unless
    given); ``(auth dict, cleanup)``."""
    name = "imgfac-ft-trust-" + uuid.uuid4().hex[:6]
    password = uuid.uuid4().hex
    made = project is None
    project = project or admin_conn.identity.create_project(
        name=name, domain_id="default")
    user = admin_conn.identity.create_user(name=name, password=password,
                                           domain_id="default")
    for role in role_names:
        admin_conn.identity.assign_project_role_to_user(
            project, user, admin_conn.identity.find_role(role))

    def cleanup():
        admin_conn.identity.delete_user(user)
        if made:
            admin_conn.identity.delete_project(project)
    return {"username": name, "password": password,
            "project_name": project.name}, cleanup


@pytest.fixture(scope="module")
def reader(admin_conn):
    """A token of a reader-only user in the imgfac project."""
    project = admin_conn.identity.find_project("imgfac", domain_id="default")
    auth, cleanup = _user(admin_conn, ["reader"], project)
    yield _token(auth)
    cleanup()


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def _glance_ids(conn, owner):
    """The project's Glance images that process ``owner`` ("host:pid")
    made (other tests' builds run meanwhile)."""
    return {image.id for image in conn.image.images()
            if (image.properties or {}).get(cloud.OWNER_TAG) == owner}


@pytest.mark.parametrize("template,fields,parameters,code,words", [
    (TESTOS_TEMPLATE, {}, {"install_kernel": "file:///etc/passwd",
                           "install_ramdisk": "file:///etc/shadow"},
     400, "only http and https URLs"),
    (ISO_TEMPLATE % "http://169.254.169.254/latest/meta-data/", {}, {},
     400, "169.254.169.254 in 169.254.0.0/16"),
    (TESTOS_TEMPLATE, {"target": "openstack", "provider": "@imgfac-test",
                       "credentials": "-"}, {}, 400, "clouds.yaml"),
    (TESTOS_TEMPLATE, {"target": "openstack",
                       "provider": '{"auth_url": "http://127.0.0.1:3306/"}',
                       "credentials": CREDENTIALS}, {}, 400,
     "provider auth_url"),
    (TESTOS_TEMPLATE, {}, {"os_plugin": "local"}, 403,
     "imgfac:build:local_os_plugin"),
    (TESTOS_TEMPLATE, {}, {"proxy_tunnel": "true",
                           "http_proxy": "http://127.0.0.1:3306/"}, 403,
     "imgfac:build:proxy_tunnel"),
    (TESTOS_TEMPLATE, {}, {"ssh_jump_agent": "true"}, 403,
     "imgfac:build:ssh_jump_agent"),
    (TESTOS_TEMPLATE, {}, {"callbacks": ["http://127.0.0.1:5000/v3/"]}, 403,
     "imgfac:build:internal_callbacks"),
], ids=["file-kernel", "metadata-iso", "cloud-provider", "loopback-keystone",
        "local-plugin", "proxy-tunnel", "ssh-agent", "loopback-callback"])
def test_a_member_may_not_reach_the_daemons_host(
        make_daemon, tokens, conn, template, fields, parameters, code,
        words):
    daemon = make_daemon()
    owner = "%s:%d" % (socket.gethostname(), daemon.proc.pid)
    kind = "provider_image" if fields.get("provider") else "base_image"
    answer = _call("POST", "%s/%ss" % (daemon.url, kind), tokens["imgfac"],
                   json={kind: dict(template=template, parameters=parameters,
                                    **fields)})
    assert answer.status_code == code, answer.text
    message = answer.json()["error"]["message"]
    assert words in message and "\n" not in message
    for collection in ("base_images", "target_images", "provider_images"):
        assert _call("GET", "%s/%s" % (daemon.url, collection),
                     tokens["imgfac"]).json() == {collection: []}
    assert _glance_ids(conn, owner) == set()
    assert _children(daemon.proc.pid) == []


def test_a_reader_reads_and_gets_403_on_post(make_daemon, tokens, reader):
    daemon = make_daemon()
    image = _post_base(daemon, tokens["imgfac"])
    _wait(daemon, tokens["imgfac"], image["id"], ("COMPLETE",))
    answer = _call("POST", daemon.url + "/base_images", reader, json={
        "base_image": {"template": TESTOS_TEMPLATE}})
    assert answer.status_code == 403, answer.text
    assert "imgfac:image:create" in answer.json()["error"]["message"]
    seen = _call("GET", daemon.url + "/base_images", reader).json()
    assert [i["base_image"]["id"] for i in seen["base_images"]] == \
        [image["id"]]
    assert _call("DELETE", daemon.url + "/base_images/" + image["id"],
                 reader).status_code == 403
    assert _call("GET", daemon.url + "/base_images/" + image["id"],
                 reader).json()["base_image"]["status"] == "COMPLETE"


def test_a_daemon_user_without_the_service_role_refuses_to_start(
        tmp_path, daemon_env, admin_conn):
    project = admin_conn.identity.find_project("service", domain_id="default")
    auth, cleanup = _user(admin_conn, ["member"], project)
    try:
        daemon = Daemon(tmp_path / "d", daemon_env, auth, 1)
        done = subprocess.run(
            [sys.executable, "-m", "imgfac_nova.api.server", "--config-file",
             daemon.config], env=daemon_env, cwd=builds.REPO,
            capture_output=True, text=True, timeout=120)
    finally:
        cleanup()
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("imgfac-nova-api: error: the daemon's Keystone "
                           "user %s holds member, reader" % auth["username"])
    assert "service" in last and "Traceback" not in done.stderr
    assert auth["password"] not in done.stderr


def test_a_plaintext_root_password_reaches_no_record_answer_or_log(
        make_daemon, tokens):
    """A kickstart with ``rootpw --plaintext`` and a URL with a password in
    what the build reports: neither password is in the API's answers, the
    callbacks, the daemon's log, the build log or the database."""
    import hashlib
    from tests.unit import httpserver
    script = "rootpw --plaintext Kick-Pw-4711\npoweroff\n"
    activity = "Fetching http://mirror:Url-Pw-0815@192.0.2.1/tree/"
    daemon = make_daemon()
    with httpserver.CallbackReceiver() as receiver:
        image = _post_base(daemon, tokens["admin"], steps=2,
                           install_script=script, activity=activity,
                           callbacks=[receiver.url("ci")])
        done = _wait(daemon, tokens["admin"], image["id"], ("COMPLETE",))
        received = list(receiver.received)
    shown = _call("GET", daemon.url + "/base_images/" + image["id"],
                  tokens["admin"]).text
    assert hashlib.sha256(script.encode()).hexdigest() in shown
    assert done["status"] == "COMPLETE"
    places = {"answer": shown, "callbacks": repr(received),
              "daemon log": daemon.read_log()}
    for root, _, names in os.walk(daemon.store):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                places[name] = handle.read().decode("latin-1")
    logs = [text for name, text in places.items() if name.endswith(".log")]
    assert logs and "192.0.2.1/tree/" in logs[0]  # the activity was shown
    for where, text in places.items():
        for secret in ("Kick-Pw-4711", "Url-Pw-0815"):
            assert secret not in text, "%s shows %s" % (where, secret)

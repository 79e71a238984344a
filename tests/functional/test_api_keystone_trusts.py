"""The daemon's Keystone trusts, against the test cloud's real Keystone: a
build's trust is made at acceptance, acts for the caller in the caller's
project after the caller's token is revoked, and is deleted when the build
ends; the start-up sweep reaches a tenant's leftovers through the trust of
the tenant's failed build."""
import socket
import subprocess
import uuid

import pytest
import requests
from oslo_config import cfg

from imgfac_nova import images
from imgfac_nova.api import trusts
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.machines import nova_connect
from tests import poll
from tests.functional import databases
from tests.functional.apidaemon import KEYSTONE
from tests.functional.apidaemon import TESTOS_TEMPLATE
from tests.functional.apidaemon import Daemon
from tests.functional.apidaemon import _call
from tests.functional.apidaemon import _post_base
from tests.functional.apidaemon import _token
from tests.functional.apidaemon import _wait


@pytest.fixture
def tenant(admin_conn, test_cloud):
    """A member of a project of its own (the daemon's own credentials, the
    imgfac project's, see nothing of it): ``(user, project, auth)``."""
    name = "imgfac-ft-trusts-" + uuid.uuid4().hex[:6]
    password = uuid.uuid4().hex
    project = admin_conn.identity.create_project(name=name,
                                                 domain_id="default")
    user = admin_conn.identity.create_user(name=name, password=password,
                                           domain_id="default",
                                           default_project_id=project.id)
    admin_conn.identity.assign_project_role_to_user(
        project, user, admin_conn.identity.find_role("member"))
    auth = {"username": name, "password": password, "project_name": name}
    yield user, project, auth
    for group in admin_conn.network.security_groups(project_id=project.id):
        admin_conn.network.delete_security_group(group, ignore_missing=True)
    admin_conn.identity.delete_user(user)
    admin_conn.identity.delete_project(project)


def _tenant_conn(auth):
    import openstack
    return openstack.connect(
        auth_url=KEYSTONE + "/v3", username=auth["username"],
        password=auth["password"], project_name=auth["project_name"],
        user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne")


def _conf(daemon):
    conf = cfg.ConfigOpts()
    conf(["--config-file", daemon.config], project="imgfac-nova",
         default_config_files=[])
    return conf


def _record(daemon, identifier):
    return databases.image_store(daemon.store).get(identifier)


def _trust(admin_conn, trust_id):
    from openstack import exceptions
    try:
        return admin_conn.identity.get_trust(trust_id)
    except exceptions.NotFoundException:
        return None


def _user_id(admin_conn, auth):
    return admin_conn.identity.find_user(auth["username"],
                                         domain_id="default").id


def test_a_build_acts_through_its_trust_after_the_token_is_revoked(
        make_daemon, tenant, admin_conn, service_user):
    user, project, auth = tenant
    own_group = _tenant_conn(auth).network.create_security_group(
        name="imgfac-ft-trusts-mark")
    daemon = make_daemon()
    token = _token(auth)
    image = _post_base(daemon, token, steps=60, step_seconds=0.5)
    record = _record(daemon, image["id"])
    assert record.status in images.ACTIVE_STATUSES and record.trust_id
    trust = _trust(admin_conn, record.trust_id)
    assert (trust.trustor_user_id, trust.trustee_user_id,
            trust.project_id, trust.is_impersonation) == (
        user.id, _user_id(admin_conn, service_user), project.id, True)
    assert "member" in {role["name"] for role in trust.roles}
    assert record.trust_id not in _call(
        "GET", daemon.url + "/base_images/" + image["id"], token).text

    revoked = requests.delete(KEYSTONE + "/v3/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token}, timeout=30)
    assert revoked.status_code == 204, revoked.text
    checked = requests.get(KEYSTONE + "/v3/auth/tokens", headers={
        "X-Auth-Token": admin_conn.auth_token, "X-Subject-Token": token},
        timeout=30)
    assert checked.status_code == 404, checked.text
    conn = nova_connect.connect(auth=trusts.auth_for(_conf(daemon), record.trust_id))
    assert (conn.current_user_id, conn.current_project_id) == (
        user.id, project.id)  # the caller, by impersonation
    assert isinstance(list(conn.compute.servers()), list)
    assert own_group.id in {g.id for g in conn.network.security_groups()}

    poll.wait_for(lambda: _record(daemon, image["id"]).status ==
                  images.COMPLETE, 120, "the build to complete", 0.5)
    # released just after the record says COMPLETE
    poll.wait_for(lambda: _record(daemon, image["id"]).trust_id is None, 30,
                  "the trust to be released", 0.2)
    assert _trust(admin_conn, record.trust_id) is None
    with pytest.raises(errors.BuildError, match="HTTP 40[14]"):
        nova_connect.connect(auth=trusts.auth_for(_conf(daemon), record.trust_id))
    assert "Deleted trust %s" % record.trust_id in daemon.read_log()


def test_a_failed_build_ends_with_its_trust_deleted(make_daemon, tenant,
                                                    admin_conn):
    daemon = make_daemon()
    token = _token(tenant[2])
    image = _post_base(daemon, token, steps=3, fail_at=1)
    trust_id = _record(daemon, image["id"]).trust_id
    assert trust_id
    _wait(daemon, token, image["id"], ("FAILED",))
    poll.wait_for(lambda: _record(daemon, image["id"]).trust_id is None, 30,
                  "the trust to be released", 0.2)
    assert _trust(admin_conn, trust_id) is None


def test_a_refused_build_leaves_no_trust(make_daemon, tenant, admin_conn):
    user = tenant[0]
    daemon = make_daemon()
    token = _token(tenant[2])
    answer = _call("POST", daemon.url + "/base_images", token, json={
        "base_image": {"template": TESTOS_TEMPLATE, "parameters": {
            "refuse": "not today"}}})
    assert answer.status_code == 400, answer.text
    assert "not today" in answer.text
    assert list(admin_conn.identity.trusts(trustor_user_id=user.id)) == []


def test_start_up_sweeps_a_tenants_project_through_its_build_trust(
        tmp_path, daemon_env, service_user, tenant, admin_conn):
    """A build of the tenant's that failed before its trust was deleted
    (the daemon died) left a tagged security group in the tenant's
    project: the next start removes it through the build's trust, which it
    then deletes."""
    user, project, auth = tenant
    tconn = _tenant_conn(auth)
    trust = tconn.identity.create_trust(
        trustor_user_id=user.id,
        trustee_user_id=_user_id(admin_conn, service_user),
        project_id=project.id, impersonation=True,
        roles=[{"name": "member"}])
    build_id = str(uuid.uuid4())
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = "%s:%d" % (socket.gethostname(), dead.pid)
    group = tconn.network.create_security_group(
        name="imgfac-ft-trusts-left")
    tconn.network.set_tags(group, ["%s=%s" % (cloud.BUILD_TAG, build_id),
                                   "%s=%s" % (cloud.OWNER_TAG, owner)])
    daemon = Daemon(tmp_path / "d", daemon_env, service_user, 1)
    databases.image_store(daemon.store).add(images.ImageRecord(
        type=images.BASE_IMAGE, identifier=build_id, status=images.FAILED,
        worker=owner, project_id=project.id, plugin="nova",
        trust_id=trust.id))
    try:
        daemon.start()
    finally:
        daemon.stop()
    assert group.id not in {g.id for g in tconn.network.security_groups()}
    assert _trust(admin_conn, trust.id) is None
    assert _record(daemon, build_id).trust_id is None
    assert "imgfac-ft-trusts-left" in daemon.read_log()

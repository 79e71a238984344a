"""trusts: the daemon's own user through a build's trust, and the
trust's life."""
import types

import pytest
import requests_mock
from oslo_config import cfg

from imgfac_nova import cleanup
from imgfac_nova import images
from imgfac_nova.api import trusts


def _conf(tmp_path, auth_type="password", **extra):
    path = tmp_path / "api.conf"
    options = dict(auth_type=auth_type, auth_url="http://keystone:5000/v3",
                   username="imgfac", password="pw", project_name="service",
                   user_domain_name="Default",
                   project_domain_name="Default", **extra)
    path.write_text("[keystone_authtoken]\n" + "".join(
        "%s = %s\n" % item for item in options.items()))
    conf = cfg.ConfigOpts()
    conf(["--config-file", str(path)], project="imgfac-nova",
         default_config_files=[])
    return conf


def test_no_trust_no_auth(tmp_path):
    assert trusts.auth_for(_conf(tmp_path), None) is None


@pytest.mark.parametrize("auth_type", ["password", "v3password"])
def test_the_service_user_logs_in_scoped_to_the_trust_alone(tmp_path,
                                                            auth_type):
    from keystoneauth1 import session
    auth = trusts.auth_for(_conf(tmp_path, auth_type), "t-1")
    with requests_mock.Mocker() as mock:
        mock.get("http://keystone:5000/v3", json={"version": {
            "id": "v3.14", "status": "stable", "links": [
                {"rel": "self", "href": "http://keystone:5000/v3/"}]}})
        mock.post("http://keystone:5000/v3/auth/tokens", status_code=201,
                  headers={"X-Subject-Token": "tok"}, json={"token": {
                      "expires_at": "2999-01-01T00:00:00Z",
                      "user": {"id": "u", "name": "imgfac"}}})
        assert auth.get_token(session.Session()) == "tok"
        [login] = [r for r in mock.request_history if r.method == "POST"]
    body = login.json()["auth"]
    assert body["scope"] == {"OS-TRUST:trust": {"id": "t-1"}}
    assert body["identity"]["password"]["user"]["name"] == "imgfac"


def test_an_auth_type_without_trusts_is_one_line(tmp_path):
    conf = _conf(tmp_path, "v3applicationcredential",
                 application_credential_id="a",
                 application_credential_secret="s")
    with pytest.raises(trusts.TrustError, match=r"^the daemon's "
                       r"\[keystone_authtoken\] auth_type "
                       r"v3applicationcredential cannot act through a "
                       r"Keystone trust: use password$"):
        trusts.auth_for(conf, "t-1")


class _Trusts(trusts.Trusts):
    """Trusts whose Keystone deletes what ``deletable`` holds."""

    def __init__(self, deletable=True):
        super().__init__(None)
        self.deletable = deletable
        self.deleted = []

    def delete(self, trust_id):
        if not self.deletable:
            raise trusts.TrustError("deleting trust %s: Keystone is down"
                                    % trust_id)
        self.deleted.append(trust_id)


def _held(tmp_path, *statuses):
    from imgfac_nova import store
    s = store.ImageStore(str(tmp_path / "store"))
    ids = [s.add(images.ImageRecord(type=images.BASE_IMAGE, status=status,
                                    trust_id="t-1")).identifier
           for status in statuses]
    return s, ids


def test_a_trust_stays_while_a_build_holding_it_runs(tmp_path):
    store, ids = _held(tmp_path, images.COMPLETE, images.PENDING)
    keystone = _Trusts()
    keystone.release(store, "t-1")
    assert keystone.deleted == []
    assert [store.get(i).trust_id for i in ids] == ["t-1", "t-1"]


def test_a_trust_is_deleted_and_forgotten_when_its_builds_ended(tmp_path):
    store, ids = _held(tmp_path, images.COMPLETE, images.FAILED)
    keystone = _Trusts()
    keystone.release(store, "t-1")
    assert keystone.deleted == ["t-1"]
    assert [store.get(i).trust_id for i in ids] == [None, None]


def test_a_trust_keystone_cannot_delete_stays_for_the_next_start(
        tmp_path, caplog):
    store, ids = _held(tmp_path, images.FAILED)
    _Trusts(deletable=False).release(store, "t-1")
    assert store.get(ids[0]).trust_id == "t-1"
    assert "Keeping trust t-1 for the next start: deleting trust t-1: " \
        "Keystone is down" in caplog.text


def test_a_daemon_that_cannot_use_trusts_takes_none(tmp_path, caplog):
    from keystoneauth1 import access
    conf = _conf(tmp_path, "v3applicationcredential",
                 application_credential_id="a",
                 application_credential_secret="s")
    caller = types.SimpleNamespace(user=access.create(body={"token": {
        "user": {"id": "u-1", "name": "u"}, "roles": [{"name": "member"}],
        "expires_at": "2999-01-01T00:00:00.000000Z"}}, auth_token="tok"))
    assert not trusts.usable(conf)
    assert trusts.Trusts(conf).create(caller, "p-1") is None
    assert "auth_type v3applicationcredential cannot act through a " \
        "Keystone trust: the build of user u-1 runs on the caller's token " \
        "alone" in caplog.text


def _service(tmp_path):
    from imgfac_nova import store as image_store
    from imgfac_nova.api import conf as api_conf
    from imgfac_nova.api import service
    conf = _conf(tmp_path)
    api_conf.register(conf)
    conf.set_override("auth_strategy", "keystone", "api")
    return service.BuildService(conf, image_store.ImageStore(
        str(tmp_path / "store")), plugins=types.SimpleNamespace())


def test_a_daemon_build_with_a_trust_acts_through_it(tmp_path):
    """The caller's token is used only to make the trust: the build's
    cloud calls go through the trust, so neither the token's expiry nor
    Keystone's allow_expired window bounds the build."""
    builds = _service(tmp_path)
    caller = object()
    assert builds.builder("p", caller).cloud_auth is caller
    # on the caller's token alone, Keystone's window bounds the build
    assert builds.builder("p", caller).token_window == 172800
    assert builds.builder("p", caller, trust_id="t-9").token_window is None
    through = builds.builder("p", caller, trust_id="t-9").cloud_auth
    assert through is not caller
    assert (through._trust_id, through._username, through._project_name) == (
        "t-9", "imgfac", None)


def test_the_start_up_sweep_acts_through_a_projects_build_trust(
        tmp_path, monkeypatch):
    builds = _service(tmp_path)
    builds.store.add(images.ImageRecord(
        type=images.BASE_IMAGE, status=images.FAILED, project_id="p",
        trust_id="t-3"))
    swept = []
    monkeypatch.setattr(builds, "builder", lambda project_id, cloud_auth: (
        types.SimpleNamespace(project_id=project_id, cloud_auth=cloud_auth)))
    monkeypatch.setattr(cleanup, "sweep", lambda builder, values: swept.append(
        (builder.project_id, builder.cloud_auth._trust_id)) or [])
    monkeypatch.setattr(builds, "release", lambda trust_id: None)
    assert builds._sweep_projects() == []
    assert swept == [("p", "t-3")]

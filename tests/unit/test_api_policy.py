"""Who may do what through the REST daemon, and what a caller may ask for:
the policy defaults and the input policy, with the headers auth_token sets
once it has validated a token (the functional tests use real tokens)."""
import pytest

from imgfac_nova.api import deploy
from imgfac_nova.api import handlers
from imgfac_nova.api import policy
from imgfac_nova.api import router
from tests.unit.test_api import Client
from tests.unit.test_api import TEMPLATE
from tests.unit.test_api import _conf
from tests.unit.test_api import _path

#: TEST-NET-1: a public address that needs no name server.
PUBLIC = TEMPLATE.replace("http://example.com/tree/", "http://192.0.2.10/t/")
ISO = PUBLIC.replace("<install type='url'><url>http://192.0.2.10/t/</url>",
                     "<install type='iso'><iso>%s</iso>")
BASES = "/imagefactory/base_images"


@pytest.fixture
def projects(plugin_site, config_file):
    conf = _conf(config_file)
    service = deploy.service(conf)
    app = router.Router(handlers.Api(service, policy.enforcer(conf)).routes())
    yield Client(app, service)
    service.shutdown()


def _as(project, roles="member,reader"):
    headers = {"X-Roles": roles, "X-User-Id": "u",
               "X-Identity-Status": "Confirmed"}
    if project:
        headers["X-Project-Id"] = project
    return headers


def _post(client, template=PUBLIC, headers=None, path=BASES, **fields):
    body = {"template": template, **fields}
    return client.post(path, body={"base_image": body},
                       headers=headers or _as("p1"))


def _nothing_made(client):
    assert client.store.list() == []


def test_images_belong_to_their_project_even_for_other_admins(projects):
    made = _post(projects)
    assert made.status_int == 202, made.text
    image = made.json["base_image"]
    path = _path(image)
    assert projects.store.get(image["id"]).project_id == "p1"
    assert projects.get(path, headers=_as("p1", "reader")).status_int == 200
    for other in (_as("p2"), _as("p2", "admin,member,reader")):
        assert projects.get(path, headers=other).status_int == 404
        assert projects.get(path + "/raw_image", headers=other).status_int \
            == 404
        assert projects.request("DELETE", path, headers=other).status_int \
            == 404
        assert projects.get(BASES, headers=other).json == {"base_images": []}
    assert len(projects.get(BASES, headers=_as("p1")).json[
        "base_images"]) == 1
    other = projects.post("/imagefactory/target_images", body={
        "target_image": {"target": "filecopy", "base_image_id": image["id"]}},
        headers=_as("p2"))
    assert other.status_int == 400
    assert "no base_image with id" in other.json["error"]["message"]


def test_a_reader_reads_but_may_not_build_or_delete(projects):
    image = _post(projects).json["base_image"]
    refused = _post(projects, headers=_as("p1", "reader"))
    assert refused.status_int == 403
    assert "imgfac:image:create" in refused.json["error"]["message"]
    assert projects.get(_path(image), headers=_as("p1", "reader")) \
        .status_int == 200
    deleted = projects.request("DELETE", _path(image),
                               headers=_as("p1", "reader"))
    assert deleted.status_int == 403
    assert len(projects.store.list()) == 1
    assert projects.get("/imagefactory/plugins", headers=_as(
        "p1", "reader")).status_int == 200
    assert projects.get("/imagefactory/plugins", headers=_as(
        "p1", "")).status_int == 403


def test_a_project_less_token_may_not_build(projects):
    answer = _post(projects, headers=_as(None, "admin,member,reader"))
    assert answer.status_int == 403
    assert "project-scoped token" in answer.json["error"]["message"]
    _nothing_made(projects)


@pytest.mark.parametrize("template,parameters,code,words", [
    (PUBLIC, {"install_kernel": "file:///etc/imgfac-nova/imgfac-nova.conf",
              "install_ramdisk": "http://192.0.2.10/initrd"},
     400, "only http and https URLs"),
    (ISO % "http://169.254.169.254/latest/meta-data/", {}, 400,
     "169.254.169.254 in 169.254.0.0/16"),
    (ISO % "http://127.0.0.1:3306/x.iso", {}, 400, "127.0.0.1 in "
     "127.0.0.0/8"),
    (ISO % "http://[::1]:8090/x.iso", {}, 400, "::1"),
    (ISO % "http://10.1.2.3/x.iso", {}, 400, "10.1.2.3 in 10.0.0.0/8"),
    (PUBLIC, {"cloud": "devstack-admin"}, 400, "clouds.yaml"),
    (PUBLIC, {"os_plugin": "local"}, 403, "imgfac:build:local_os_plugin"),
    (PUBLIC, {"proxy_tunnel": "true",
              "http_proxy": "http://127.0.0.1:3306/"}, 403,
     "imgfac:build:proxy_tunnel"),
    (PUBLIC, {"ssh_jump_agent": True}, 403, "imgfac:build:ssh_jump_agent"),
    (PUBLIC, {"callbacks": ["http://127.0.0.1:5000/v3"]}, 403,
     "imgfac:build:internal_callbacks"),
    (PUBLIC, {"callbacks": ["file:///tmp/x"]}, 400, "only http and https"),
], ids=["file-kernel", "metadata-iso", "loopback-iso", "ipv6-loopback-iso",
        "private-iso", "cloud", "local-plugin", "proxy-tunnel", "ssh-agent",
        "loopback-callback", "file-callback"])
def test_a_member_may_not_reach_the_daemons_host(projects, template,
                                                 parameters, code, words):
    answer = _post(projects, template, parameters=parameters)
    assert answer.status_int == code, answer.text
    message = answer.json["error"]["message"]
    assert words in message
    assert "\n" not in message
    _nothing_made(projects)


def test_an_admin_may_what_a_member_may_not(projects):
    admin = _as("p1", "admin,member,reader")
    for parameters in ({"os_plugin": "local", "memory": 256},
                       {"callbacks": ["http://127.0.0.1:9/hook"]}):
        answer = _post(projects, headers=admin, parameters=parameters)
        assert answer.status_int != 403, answer.text
    # Loopback media stays refused, whoever asks.
    answer = _post(projects, ISO % "http://127.0.0.1:3306/x.iso",
                   headers=admin)
    assert answer.status_int == 400


def test_operator_allowed_hosts_and_networks(plugin_site, config_file):
    conf = _conf(config_file, url_allowed_hosts=["127.0.0.1:8090"],
                 url_denied_networks=[])
    service = deploy.service(conf)
    app = router.Router(handlers.Api(service, policy.enforcer(conf)).routes())
    client = Client(app, service)
    try:
        for url in ("http://127.0.0.1:8090/x.iso", "http://10.1.2.3/x.iso"):
            answer = _post(client, ISO % url)
            assert answer.status_int == 202, answer.text
        assert _post(client, ISO % "http://127.0.0.1:8091/x.iso") \
            .status_int == 400
    finally:
        service.shutdown()


@pytest.mark.parametrize("provider,credentials,words", [
    ("@devstack", "-", "clouds.yaml"),
    ("/etc/imgfac-nova/provider.json", "<provider_credentials/>",
     "reads no files"),
    ('{"glance-host": "192.0.2.20"}', "/root/credentials.xml",
     "reads no files"),
    ('{"auth_url": "http://169.254.169.254/v3"}',
     "<provider_credentials><openstack_credentials><username>u</username>"
     "<password>p</password></openstack_credentials></provider_credentials>",
     "provider auth_url"),
], ids=["cloud", "provider-file", "credentials-file", "metadata-keystone"])
def test_providers_name_no_daemon_files_or_internal_endpoints(
        projects, provider, credentials, words):
    body = {"provider_image": {"template": PUBLIC, "target": "filecopy",
                               "provider": provider,
                               "credentials": credentials}}
    answer = projects.post("/imagefactory/provider_images", body=body,
                           headers=_as("p1"))
    assert answer.status_int == 400, answer.text
    assert words in answer.json["error"]["message"]
    _nothing_made(projects)


def test_noauth_is_refused_off_loopback(config_file):
    conf = _conf(config_file, bind_host="0.0.0.0")
    with pytest.raises(deploy.UnsafeNoAuth) as raised:
        deploy.check(conf)
    assert "loopback" in str(raised.value)


def test_a_body_over_the_limit_is_413(config_file):
    conf = _conf(config_file)
    service = deploy.service(conf)
    client = Client(deploy.deploy(conf, service), service)
    try:
        assert conf.oslo_middleware.max_request_body_size == \
            conf.max_template_bytes + 1024 * 1024
        conf.set_override("max_request_body_size", 4096, "oslo_middleware")
        answer = _post(client, PUBLIC + " " * 5000)
        assert answer.status_int == 413
        _nothing_made(client)
    finally:
        service.shutdown()


def test_a_bad_denied_network_stops_the_daemon_in_one_line(config_file):
    from imgfac_nova.api import inputs
    conf = _conf(config_file, url_denied_networks=["10.0.0.0/33"])
    with pytest.raises(inputs.BadNetworks) as raised:
        deploy.check(conf)
    assert str(raised.value).startswith("[api] url_denied_networks: ")
    assert "10.0.0.0/33" in str(raised.value)
    assert "\n" not in str(raised.value)

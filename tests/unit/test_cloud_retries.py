"""Transient cloud failures: requests that may be repeated are retried by
keystoneauth (one log line each), creates are sent once and a lost answer
is resolved by looking for what the create made; the real openstacksdk and
keystoneauth against a cloud declared by requests-mock."""
import openstack.connection
import pytest
import requests
import requests_mock
from keystoneauth1 import exceptions as ksa
from keystoneauth1 import noauth

from novaimagebuilder import cloud as cloudlib
from novaimagebuilder import errors
from novaimagebuilder import retries
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import nova_version

SERVER = {"server": {"id": "srv1", "name": "imgfac-nova-b1-guest",
                     "status": "ACTIVE"}}
NEUTRON = "http://neutron.test/"
RESET = {"exc": requests.exceptions.ConnectionError(
    "('Connection aborted.', ConnectionResetError(104, 'reset'))")}


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.get(NOVA, json=nova_version())
        yield mock


def connect(**config):
    return openstack.connection.Connection(
        session=retries.Session(auth=noauth.NoAuth()),
        compute_endpoint_override=NOVA, **config)


def connect_neutron(cloud):
    """A connection to Nova and to Neutron (its version discovery
    declared)."""
    cloud.get(NEUTRON, json={"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": NEUTRON + "v2.0/"}]}]})
    return connect(network_endpoint_override=NEUTRON)


def calls(cloud, method, path):
    return [r for r in cloud.request_history
            if r.method == method and r.path == path]


def test_a_get_rides_out_a_reset_and_a_503(cloud, caplog):
    caplog.set_level("INFO")
    cloud.get(NOVA + "servers/srv1", [RESET, {"status_code": 503},
                                      {"status_code": 502},
                                      {"json": SERVER}])
    found = connect().compute.get_server("srv1")
    assert found.status == "ACTIVE"
    assert len(calls(cloud, "GET", "/v2.1/servers/srv1")) == 4
    lines = [r.getMessage() for r in caplog.records
             if r.name == retries.LOG.name]
    assert len(lines) == 3
    assert lines[0].startswith("compute GET servers/srv1: Failure: Unable "
                               "to establish connection")
    assert lines[0].endswith("Retrying in 0.5s. 4 retries left")
    assert lines[1] == ("compute GET servers/srv1: Retriable status code "
                        "503. Retrying in 0.5s. 4 retries left")
    assert all("\n" not in line for line in lines)


def test_retries_end_with_the_failure(cloud, monkeypatch):
    monkeypatch.setattr(retries, "RETRIES", 2)
    cloud.delete(NOVA + "servers/srv1", status_code=503)
    with pytest.raises(openstack.exceptions.HttpException) as raised:
        connect().compute.delete_server("srv1")
    assert raised.value.status_code == 503
    assert len(calls(cloud, "DELETE", "/v2.1/servers/srv1")) == 3


def test_clouds_yaml_settings_win(cloud):
    cloud.get(NOVA + "servers/srv1", [{"status_code": 503},
                                      {"json": SERVER}])
    with pytest.raises(openstack.exceptions.HttpException):
        connect(compute_status_code_retries=0).compute.get_server("srv1")
    assert len(calls(cloud, "GET", "/v2.1/servers/srv1")) == 1


def test_a_create_is_sent_once(cloud):
    cloud.post(NOVA + "servers", [RESET, {"status_code": 202,
                                          "json": SERVER}])
    with pytest.raises(ksa.ConnectFailure):
        connect().compute.create_server(name="x", image_id="i",
                                        flavor_id="f")
    assert len(calls(cloud, "POST", "/v2.1/servers")) == 1


def test_a_streamed_put_is_sent_once(cloud):
    cloud.put(NOVA + "upload", [{"status_code": 503}, {"status_code": 204}])
    answer = connect().compute.put("/upload", data=iter([b"bytes"]))
    assert answer.status_code == 503
    assert retries.repeatable("PUT", b"whole") and \
        not retries.repeatable("PATCH", b"whole")


def test_a_create_whose_answer_was_lost_is_adopted(cloud, caplog):
    caplog.set_level("INFO")
    conn = connect()
    cloud.post(NOVA + "servers", [RESET, {"status_code": 202,
                                          "json": SERVER}])
    found = retries.send_once(
        "creating the guest",
        lambda: conn.compute.create_server(name="x", image_id="i",
                                           flavor_id="f"),
        lambda: "the server it made")
    assert found == "the server it made"
    assert len(calls(cloud, "POST", "/v2.1/servers")) == 1
    assert "creating the guest: the answer was lost (cannot reach the " \
        "cloud: Unable to establish connection" in caplog.text


def test_a_create_that_made_nothing_is_sent_again(cloud, caplog):
    caplog.set_level("INFO")
    conn = connect()
    cloud.post(NOVA + "servers", [{"status_code": 503},
                                  {"status_code": 202, "json": SERVER}])
    found = retries.send_once(
        "creating the guest",
        lambda: conn.compute.create_server(name="x", image_id="i",
                                           flavor_id="f"),
        lambda: None)
    assert found.id == "srv1"
    assert len(calls(cloud, "POST", "/v2.1/servers")) == 2
    assert "it was not done; sending it again" in caplog.text


def test_a_refused_create_is_one_line(cloud):
    conn = connect()
    message = ("Quota exceeded for instances: Requested 1, but already "
               "used 10 of 10 instances")
    cloud.post(NOVA + "servers", status_code=403,
               headers={"Content-Type": "application/json"},
               json={"forbidden": {"code": 403, "message": message}})
    looked = []
    with pytest.raises(errors.BuildError) as raised:
        retries.send_once("Nova refused to boot the guest",
                          lambda: conn.compute.create_server(
                              name="x", image_id="i", flavor_id="f"),
                          lambda: looked.append(1))
    assert str(raised.value) == (
        "Nova refused to boot the guest: quota exceeded: Quota exceeded for "
        "instances: Requested 1, but already used 10 of 10 instances")
    assert looked == []


def test_a_server_create_whose_answer_was_lost_is_adopted(cloud):
    """The backend's boot: the POST is reset after Nova made the server;
    the build finds its tagged server by name and boots nothing twice."""
    from novaimagebuilder.machines import nova
    conn = connect()
    flavor = openstack.compute.v2.flavor.Flavor(id="1", name="1", disk=2)
    backend = nova.NovaBackend(conn, "b1", flavor, config_drive=False)
    made = dict(SERVER["server"], metadata={cloudlib.BUILD_TAG: "b1"})
    other = dict(made, id="srv0", metadata={cloudlib.BUILD_TAG: "b0"})
    cloud.post(NOVA + "servers", [RESET])
    # Looked for before the create (none: nothing to adopt), then after it.
    cloud.get(NOVA + "servers/detail", [{"json": {"servers": [other]}},
                                        {"json": {"servers": [other, made]}}])
    cloud.get(NOVA + "servers/srv1", json={"server": made})
    server = backend._boot("guest", "img")
    assert server.id == "srv1"
    assert len(calls(cloud, "POST", "/v2.1/servers")) == 1
    listed = calls(cloud, "GET", "/v2.1/servers/detail")
    assert len(listed) == 2
    assert listed[1].qs["name"] == [r"^imgfac\-nova\-b1\-guest$"]


def test_a_floating_ip_whose_answer_was_lost_is_adopted(cloud):
    from novaimagebuilder.machines import nova
    from novaimagebuilder.machines import nova_servers
    conn = connect_neutron(cloud)
    cloud.get(NEUTRON + "v2.0/networks", json={"networks": [
        {"id": "ext", "name": "public", "router:external": True}]})
    cloud.get(NEUTRON + "v2.0/ports", json={"ports": [
        {"id": "port1", "network_id": "net1", "device_id": "srv1"}]})
    cloud.post(NEUTRON + "v2.0/floatingips", [RESET])
    cloud.get(NEUTRON + "v2.0/floatingips", json={"floatingips": [
        {"id": "fip1", "floating_ip_address": "203.0.113.7",
         "port_id": "port1", "description": "imgfac-nova build b1"}]})
    cloud.put(NEUTRON + "v2.0/floatingips/fip1/tags", json={"tags": []})
    flavor = openstack.compute.v2.flavor.Flavor(id="1", name="1", disk=2)
    backend = nova.NovaBackend(conn, "b1", flavor, floating_ip=True)
    address = backend._floating_ip(nova_servers.Server("srv1", "guest", "guest"))
    assert address == "203.0.113.7"
    assert len(calls(cloud, "POST", "/v2.0/floatingips")) == 1
    looked = calls(cloud, "GET", "/v2.0/floatingips")
    assert looked[0].qs == {"port_id": ["port1"],
                            "description": ["imgfac-nova build b1"]}


def test_a_security_group_whose_answer_was_lost_is_adopted(cloud):
    """Neutron takes two groups of one name: the POST reset after Neutron
    made the group is resolved by finding it (its name and the build's
    description; another build's group of that name is not it)."""
    from novaimagebuilder.machines import nova
    conn = connect_neutron(cloud)
    cloud.post(NEUTRON + "v2.0/security-groups", [RESET])
    cloud.get(NEUTRON + "v2.0/security-groups", json={"security_groups": [
        {"id": "sg0", "name": "imgfac-nova-b1-ssh",
         "description": "SSH for imgfac-nova build b0"},
        {"id": "sg1", "name": "imgfac-nova-b1-ssh",
         "description": "SSH for imgfac-nova build b1"}]})
    cloud.put(NEUTRON + "v2.0/security-groups/sg1/tags", json={"tags": []})
    flavor = openstack.compute.v2.flavor.Flavor(id="1", name="1", disk=2)
    group = nova.NovaBackend(conn, "b1", flavor)._ssh_group()
    assert group.id == "sg1"
    assert len(calls(cloud, "POST", "/v2.0/security-groups")) == 1
    assert calls(cloud, "GET", "/v2.0/security-groups")[0].qs == {
        "name": ["imgfac-nova-b1-ssh"]}

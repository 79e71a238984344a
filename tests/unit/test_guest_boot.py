"""The Nova backend's customization server: its user data carries the
build's host key, and its throw-away security group lets SSH in from where
the build connects only; REST conversations of the real openstacksdk with a
cloud declared by requests-mock."""
import base64
import ipaddress
import json
import logging

import openstack.connection
import pytest
import requests_mock
import yaml

from imgfac_nova.plugins import nova as nova_plugin
from novaimagebuilder import cloud as cloudlib
from novaimagebuilder import errors
from novaimagebuilder.guest import hostkeys
from novaimagebuilder.machines import nova
from novaimagebuilder.machines import ssh_source
from novaimagebuilder import scrub
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import nova_version

NEUTRON = "http://neutron.test/"
GUEST = {"server": {"id": "srv1", "name": "imgfac-nova-b1-guest",
                    "status": "ACTIVE", "accessIPv4": "",
                    "addresses": {"net": [{"addr": "127.0.0.5", "version": 4,
                                           "OS-EXT-IPS:type": "fixed"}]}}}


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.get(NOVA, json=nova_version())
        mock.get(NEUTRON, json={"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": NEUTRON + "v2.0/"}]}]})
        mock.post(NOVA + "os-keypairs", json={"keypair": {"name": "k"}})
        mock.post(NEUTRON + "v2.0/security-groups", json={"security_group": {
            "id": "sg1", "name": "imgfac-nova-b1-ssh"}})
        mock.put(NEUTRON + "v2.0/security-groups/sg1/tags", json={"tags": []})
        mock.post(NEUTRON + "v2.0/security-group-rules", status_code=201,
                  json={"security_group_rule": {"id": "r"}})
        mock.get(NEUTRON + "v2.0/floatingips", json={"floatingips": []})
        # Nothing an earlier run of the build left (see test_resume_*).
        mock.get(NEUTRON + "v2.0/security-groups",
                 json={"security_groups": []})
        mock.delete(NOVA + "os-keypairs/imgfac-nova-b1-key", status_code=404)
        mock.get(NOVA + "servers/detail", json={"servers": []})
        mock.post(NOVA + "servers", status_code=202, json=GUEST)
        mock.get(NOVA + "servers/srv1", json=GUEST)
        yield mock


def backend(**kwargs):
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": NOVA},
        compute_endpoint_override=NOVA, network_endpoint_override=NEUTRON)
    flavor = conn.compute._get_resource(
        openstack.compute.v2.flavor.Flavor, None, id="1", name="1", disk=2)
    return nova.NovaBackend(conn, "b1", flavor, **kwargs)


def _bodies(cloud, method, path):
    return [json.loads(r.body) for r in cloud.request_history
            if r.method == method and r.path == path]


def _rules(cloud):
    return [(r["security_group_rule"]["remote_ip_prefix"],
             r["security_group_rule"]["ethertype"])
            for r in _bodies(cloud, "POST", "/v2.0/security-group-rules")]


def test_user_data_carries_the_host_key_and_ssh_opens_to_this_host(
        cloud, caplog):
    """The guest at 127.0.0.5: this host's route leaves from 127.0.0.1, so
    the group lets SSH in from 127.0.0.1/32 alone; the server's user data
    is the build's cloud-config; the private key is in no log line, even
    keystoneauth's DEBUG request bodies (as the CLI's handlers scrub)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="keystoneauth")  # as --debug
    scrub.install(caplog.handler)
    key = hostkeys.generate()
    machine = backend().boot_guest("jeos1", "debian", "ssh-ed25519 AAAA k",
                                   user_data=hostkeys.user_data([key]))
    assert machine.address == "127.0.0.5"
    boot = _bodies(cloud, "POST", "/v2.1/servers")[0]["server"]
    assert boot["security_groups"] == [{"name": "imgfac-nova-b1-ssh"}]
    config = yaml.safe_load(base64.b64decode(boot["user_data"]))
    assert config["ssh_keys"]["ed25519_private"] == key.private
    assert _rules(cloud) == [("127.0.0.1/32", "IPv4")]
    rule = _bodies(cloud, "POST", "/v2.0/security-group-rules")[0]
    assert rule["security_group_rule"]["port_range_min"] == 22
    assert rule["security_group_rule"]["port_range_max"] == 22
    assert key.private.splitlines()[1] not in caplog.text
    assert boot["user_data"][:40] not in caplog.text
    assert '"user_data": "***"' in caplog.text  # the body was logged
    assert "lets SSH in from 127.0.0.1/32 (where this build connects from" \
        in caplog.text


def test_no_user_data_without_host_keys(cloud):
    backend().boot_guest("jeos1", "debian", "ssh-ed25519 AAAA k")
    assert "user_data" not in _bodies(cloud, "POST",
                                      "/v2.1/servers")[0]["server"]


def test_ssh_source_cidr_is_the_rule(cloud):
    sources = ssh_source.parse("203.0.113.7, 2001:db8::/64")
    guest = backend(ssh_sources=sources)
    guest.boot_guest("jeos1", "debian", "ssh-ed25519 AAAA k")
    assert _rules(cloud) == [("203.0.113.7/32", "IPv4"),
                             ("2001:db8::/64", "IPv6")]
    # Named, no Neutron look-up is needed (only the build's own floating
    # IPs are looked for, to remove what an earlier run left).
    assert not [r for r in cloud.request_history
                if r.path == "/v2.0/floatingips" and "description" not in r.qs]
    assert guest.ssh_limits(None) == (
        "the build's security group lets SSH in from 203.0.113.7/32, "
        "2001:db8::/64 only; when the cloud sees this host at another "
        "address (a NAT), give ssh_source_cidr")


def test_jump_host_with_a_floating_ip_opens_both_its_addresses(cloud):
    """A jump host that is a server of the project, reached at its floating
    IP: the guest beside it sees its fixed address."""
    cloud.get(NEUTRON + "v2.0/floatingips?floating_ip_address=127.0.0.77",
              json={"floatingips": [{"id": "f", "fixed_ip_address":
                                     "10.0.0.7", "floating_ip_address":
                                     "127.0.0.77"}]})
    backend(ssh_via="127.0.0.77").boot_guest("jeos1", "debian",
                                             "ssh-ed25519 AAAA k")
    assert _rules(cloud) == [("10.0.0.7/32", "IPv4"),
                             ("127.0.0.77/32", "IPv4")]


def test_existing_groups_get_no_rule(cloud):
    guest = backend(security_groups=["ops-ssh"])
    guest.boot_guest("jeos1", "debian", "ssh-ed25519 AAAA k")
    assert _rules(cloud) == []
    assert _bodies(cloud, "POST", "/v2.1/servers")[0]["server"][
        "security_groups"] == [{"name": "ops-ssh"}]
    assert guest.ssh_limits(None) == ""


@pytest.mark.parametrize("text,message", [
    ("203.0.113.300/32", "ssh_source_cidr '203.0.113.300/32' is not an IP "
                         "network (such as 203.0.113.7/32)"),
    (" , ", "ssh_source_cidr ' , ' names no network"),
])
def test_bad_ssh_source_cidr_is_one_line(text, message):
    with pytest.raises(ValueError) as caught:
        ssh_source.parse(text)
    assert str(caught.value) == message


def test_ssh_source_cidr_with_security_groups_is_refused():
    with pytest.raises(errors.BuildError, match="ssh_source_cidr is for the "
                       "build's own security group"):
        nova_plugin._ssh_sources({"ssh_source_cidr": "203.0.113.7/32",
                                  "security_groups": "ops-ssh"})
    assert nova_plugin._ssh_sources({"security_groups": "ops-ssh"}) == []


def test_unresolvable_jump_host_names_the_parameter(cloud):
    with pytest.raises(errors.BuildError) as caught:
        backend(ssh_via="no-such-host.invalid").boot_guest(
            "jeos1", "debian", "ssh-ed25519 AAAA k")
    assert str(caught.value).startswith(
        "cannot tell which address SSH to 127.0.0.5 comes from")
    assert str(caught.value).endswith(": give ssh_source_cidr")


def test_a_resumed_build_removes_the_guest_an_earlier_run_left(cloud):
    """Customization starts again (the earlier run's SSH key died with its
    process): its guest, security group and floating IP go first."""
    stale = dict(GUEST["server"], id="srv0", metadata={cloudlib.BUILD_TAG: "b1"})
    cloud.get(NOVA + "servers/detail", [{"json": {"servers": [stale]}},
                                        {"json": {"servers": []}}])
    cloud.delete(NOVA + "servers/srv0", status_code=204)
    cloud.get(NOVA + "servers/srv0", status_code=404)
    cloud.get(NEUTRON + "v2.0/security-groups", json={"security_groups": [
        {"id": "sg0", "name": "imgfac-nova-b1-ssh",
         "tags": [cloudlib.BUILD_TAG + "=b1"]},
        {"id": "sgx", "name": "imgfac-nova-b1-ssh", "tags": []}]})
    cloud.delete(NEUTRON + "v2.0/security-groups/sg0", status_code=204)
    cloud.get(NEUTRON + "v2.0/floatingips", json={"floatingips": [
        {"id": "fip0", "floating_ip_address": "203.0.113.9",
         "description": "imgfac-nova build b1"}]})
    cloud.delete(NEUTRON + "v2.0/floatingips/fip0", status_code=204)
    cloud.delete(NOVA + "os-keypairs/imgfac-nova-b1-key", status_code=202)
    backend(ssh_sources=[ipaddress.ip_network("192.0.2.0/24")]).boot_guest(
        "jeos", "fedora", "ssh-ed25519 AAAA k")
    deleted = [r.path for r in cloud.request_history if r.method == "DELETE"]
    assert deleted[:4] == ["/v2.1/servers/srv0", "/v2.0/floatingips/fip0",
                           "/v2.0/security-groups/sg0",
                           "/v2.1/os-keypairs/imgfac-nova-b1-key"]
    assert "/v2.0/security-groups/sgx" not in deleted  # not the build's
    assert len([r for r in cloud.request_history
                if r.method == "POST" and r.path == "/v2.1/servers"]) == 1


def test_a_guest_that_fails_to_boot_goes_with_all_it_had(cloud):
    """Nova puts the guest in ERROR: its server, security group and
    keypair are found by the build's tags and names, as the cloud lists
    them, and removed (nothing is remembered only in this process)."""
    failed = dict(GUEST["server"], status="ERROR", metadata={
        cloudlib.BUILD_TAG: "b1"}, fault={"code": 500, "message": "boom"})
    # Looked for before the guest is booted (twice: an earlier run's
    # guest, then a create whose answer was lost), then after it failed.
    cloud.get(NOVA + "servers/detail", [{"json": {"servers": []}},
                                        {"json": {"servers": []}},
                                        {"json": {"servers": [failed]}}])
    cloud.get(NOVA + "servers/srv1", [{"json": {"server": failed}},
                                      {"status_code": 404, "json": {}}])
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    cloud.get(NEUTRON + "v2.0/security-groups", [
        {"json": {"security_groups": []}},
        {"json": {"security_groups": [{
            "id": "sg1", "name": "imgfac-nova-b1-ssh",
            "tags": [cloudlib.BUILD_TAG + "=b1"]}]}}])
    cloud.delete(NEUTRON + "v2.0/security-groups/sg1", status_code=204)
    cloud.delete(NOVA + "os-keypairs/imgfac-nova-b1-key", status_code=202)
    with pytest.raises(errors.BuildError, match="boom"):
        backend().boot_guest("jeos1", "debian", "ssh-ed25519 AAAA k")
    deleted = [r.path for r in cloud.request_history if r.method == "DELETE"]
    assert deleted[-3:] == ["/v2.1/servers/srv1", "/v2.0/security-groups/sg1",
                            "/v2.1/os-keypairs/imgfac-nova-b1-key"]

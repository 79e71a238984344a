"""What the cloud said, in one line: a server's fault (with "No valid host"
explained from the flavor, the image and placement) and the project's
quotas before a build, as REST conversations of the real openstacksdk with
a cloud declared by requests-mock."""
import re

import openstack.connection
import pytest
import requests_mock

from novaimagebuilder import errors
from novaimagebuilder.machines import faults
from novaimagebuilder.machines import quotas
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import nova_version

GLANCE = "http://glance.test/"
NEUTRON = "http://neutron.test/"
PLACEMENT = "http://placement.test/"
CINDER = "http://cinder.test/v3/"

FLAVOR = {"original_name": "huge", "vcpus": 2, "ram": 40000, "disk": 4,
          "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 2048,
          "extra_specs": {"trait:HW_CPU_X86_AVX512F": "required"}}
NO_VALID_HOST = {"server": {
    "id": "srv1", "name": "imgfac-nova-b1-installer", "status": "ERROR",
    "flavor": FLAVOR, "image": {"id": "img1"},
    "fault": {"code": 500, "message": "No valid host was found. "}}}
IMAGE = {"id": "img1", "status": "active", "disk_format": "qcow2",
         "hw_machine_type": "q35", "kernel_id": "k1",
         "traits:CUSTOM_IMGFAC": "required"}


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.get(NOVA, json=nova_version())
        mock.get(GLANCE, json={"versions": [{
            "id": "v2.16", "status": "CURRENT",
            "links": [{"rel": "self", "href": GLANCE + "v2/"}]}]})
        mock.get(GLANCE + "v2/images/img1", json=IMAGE)
        mock.get(PLACEMENT, json={"versions": [{
            "id": "v1.0", "status": "CURRENT", "min_version": "1.0",
            "max_version": "1.39", "links": [{"rel": "self", "href": ""}]}]})
        mock.get(CINDER, json={"version": {
            "id": "v3.0", "status": "CURRENT", "version": "3.70",
            "min_version": "3.0",
            "links": [{"rel": "self", "href": CINDER}]}})
        yield mock


@pytest.fixture
def conn():
    return openstack.connection.Connection(
        auth_type="none", auth={"endpoint": NOVA},
        compute_endpoint_override=NOVA, image_endpoint_override=GLANCE,
        network_endpoint_override=NEUTRON,
        placement_endpoint_override=PLACEMENT,
        block_storage_endpoint_override=CINDER)


def server(conn, body):
    return conn.compute._get_resource(
        openstack.compute.v2.server.Server, None, **body["server"])


def test_a_fault_is_its_first_line():
    found = openstack.compute.v2.server.Server(
        id="s", status="ERROR", fault={"message": "Build of instance s "
                                       "aborted: disk full\nTraceback"})
    assert faults.server_error(found) == (
        "Nova put the server in ERROR: Build of instance s aborted: disk full")
    assert faults.server_error(openstack.compute.v2.server.Server(
        id="s", status="ERROR")) == (
        "Nova put the server in ERROR: no fault message")


def test_no_valid_host_names_what_placement_lacks(cloud, conn):
    """As an admin: the flavor, image properties and traits asked for, and
    which of them no resource provider has free."""
    rp = PLACEMENT + "resource_providers/rp1/"
    cloud.get(PLACEMENT + "resource_providers", json={
        "resource_providers": [{"uuid": "rp1", "name": "compute1"}]})
    cloud.get(rp + "inventories", json={"inventories": {
        "VCPU": {"total": 8, "reserved": 0, "max_unit": 8,
                 "allocation_ratio": 4.0},
        "MEMORY_MB": {"total": 16384, "reserved": 512, "max_unit": 16384,
                      "allocation_ratio": 1.0},
        "DISK_GB": {"total": 100, "reserved": 0, "max_unit": 100,
                    "allocation_ratio": 1.0}}})
    cloud.get(rp + "usages", json={"usages": {"VCPU": 1, "MEMORY_MB": 1024,
                                              "DISK_GB": 4}})
    cloud.get(rp + "traits", json={"traits": ["COMPUTE_NODE",
                                              "HW_CPU_X86_AVX512F"]})
    line = faults.server_error(server(conn, NO_VALID_HOST), conn)
    assert line == (
        "Nova put the server in ERROR: No valid host was found (flavor "
        "'huge': 2 vCPU, 40000 MiB RAM, 6 GiB disk; extra specs "
        "trait:HW_CPU_X86_AVX512F=required; image properties "
        "hw_machine_type=q35, traits:CUSTOM_IMGFAC=required; required traits "
        "CUSTOM_IMGFAC, HW_CPU_X86_AVX512F): no compute host has 40000 MiB "
        "RAM free (the most is 14848) or the traits CUSTOM_IMGFAC")


def test_no_valid_host_without_placement_access(cloud, conn):
    cloud.get(PLACEMENT + "resource_providers", status_code=403, json={
        "errors": [{"status": 403, "title": "Forbidden"}]})
    line = faults.server_error(server(conn, NO_VALID_HOST), conn)
    assert line.startswith("Nova put the server in ERROR: No valid host was "
                           "found (flavor 'huge': 2 vCPU, 40000 MiB RAM")
    assert line.endswith("): these credentials may not read placement, where "
                         "the cloud's administrator can see which resource "
                         "is short")
    assert "\n" not in line


def limits(cloud, instances_used=1, cores=20, cores_used=1, keypairs=0):
    cloud.get(NOVA + "limits", json={"limits": {"rate": [], "absolute": {
        "maxTotalInstances": 10, "totalInstancesUsed": instances_used,
        "maxTotalCores": cores, "totalCoresUsed": cores_used,
        "maxTotalRAMSize": 51200, "totalRAMUsed": 1024,
        "maxTotalKeypairs": 2}}})
    cloud.get(NOVA + "os-keypairs", json={"keypairs": [
        {"keypair": {"name": "k%d" % n}} for n in range(keypairs)]})


def neutron_quota(cloud, **used):
    cloud.get(NEUTRON, json={"versions": [{
        "id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": NEUTRON + "v2.0/"}]}]})
    cloud.get(re.compile(re.escape(NEUTRON) + r"v2.0/quotas/.*/details"),
              json={"quota": {name: {"limit": 10, "used": used.get(name, 0),
                                     "reserved": 0}
                              for name in ("ports", "security_groups",
                                           "security_group_rules",
                                           "floating_ips")}})


def flavor(vcpus=2, ram=1024):
    return openstack.compute.v2.flavor.Flavor(id="2", name="2", vcpus=vcpus,
                                              ram=ram, disk=4)


def test_quotas_that_suffice_pass(cloud, conn):
    limits(cloud)
    neutron_quota(cloud, security_group_rules=7)
    quotas.check(conn, quotas.for_build(flavor(), floating_ip=True))


def test_every_short_quota_is_named_in_one_line(cloud, conn):
    limits(cloud, cores=2, cores_used=1, keypairs=2)
    neutron_quota(cloud, floating_ips=10)
    with pytest.raises(errors.BuildError) as raised:
        quotas.check(conn, quotas.for_build(flavor(), floating_ip=True))
    assert str(raised.value) == (
        "the project's quota is too small for this build: Nova cores: 1 of 2 "
        "left, the build needs 2; Nova keypairs: 0 of 2 left, the build "
        "needs 1; Neutron floating IPs: 0 of 10 left, the build needs 1")


def test_floating_ips_and_own_group_only_when_used(cloud, conn):
    limits(cloud)
    neutron_quota(cloud, floating_ips=10, security_groups=10)
    quotas.check(conn, quotas.for_build(flavor(), security_group=False))


def test_a_quota_it_may_not_read_is_left_to_the_create(cloud, conn, caplog):
    caplog.set_level("INFO")
    limits(cloud, instances_used=10)
    cloud.get(NEUTRON, json={"versions": []})
    cloud.get(re.compile(re.escape(NEUTRON) + r"v2.0/quotas/.*"),
              status_code=403, json={"NeutronError": {
                  "message": "not allowed", "type": "Forbidden"}})
    with pytest.raises(errors.BuildError) as raised:
        quotas.check(conn, quotas.for_build(flavor()))
    assert str(raised.value) == (
        "the project's quota is too small for this build: Nova instances: 0 "
        "of 10 left, the build needs 1")
    assert "Not checking Neutron's quotas before the build" in caplog.text


def test_volume_backed_builds_check_cinder(cloud, conn):
    limits(cloud)
    neutron_quota(cloud)
    cloud.get(re.compile(re.escape(CINDER) + r"os-quota-sets/.*"), json={
        "quota_set": {"volumes": {"limit": 10, "in_use": 2, "reserved": 0},
                      "gigabytes": {"limit": 20, "in_use": 15,
                                    "reserved": 0}}})
    with pytest.raises(errors.BuildError) as raised:
        quotas.check(conn, quotas.for_build(flavor(), volume_gb=10))
    assert str(raised.value).endswith(
        "Cinder volume gigabytes: 5 of 20 left, the build needs 10")


def test_an_unplaceable_flavor_is_refused_before_the_build(cloud, conn):
    rp = PLACEMENT + "resource_providers/rp1/"
    cloud.get(PLACEMENT + "resource_providers", json={
        "resource_providers": [{"uuid": "rp1", "name": "compute1"}]})
    cloud.get(rp + "inventories", json={"inventories": {
        "VCPU": {"total": 8, "reserved": 0, "max_unit": 8,
                 "allocation_ratio": 4.0},
        "MEMORY_MB": {"total": 16384, "reserved": 512, "max_unit": 16384,
                      "allocation_ratio": 1.0},
        "DISK_GB": {"total": 100, "reserved": 0, "max_unit": 100,
                    "allocation_ratio": 1.0}}})
    cloud.get(rp + "usages", json={"usages": {"MEMORY_MB": 0}})
    cloud.get(rp + "traits", json={"traits": []})
    faults.check_placeable(conn, flavor(ram=2048))
    with pytest.raises(errors.BuildError) as raised:
        faults.check_placeable(conn, flavor(ram=40000))
    assert str(raised.value) == (
        "no compute host can place flavor '2' (2 vCPU, 40000 MiB RAM, 4 GiB "
        "disk): no compute host has 40000 MiB RAM free (the most is 15872)")


def test_placement_unreadable_says_nothing_before_the_build(cloud, conn):
    cloud.get(PLACEMENT + "resource_providers", status_code=403)
    faults.check_placeable(conn, flavor(ram=40000))

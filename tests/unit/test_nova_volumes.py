"""Volume-backed builds (novaimagebuilder.machines.nova_volumes): the build's own
Cinder volumes as the servers' root disks, captures that upload the volume
to Glance, adoption, faults, sweep, and the plugin's checks; as REST
conversations of the real openstacksdk with a cloud declared by
requests-mock."""
import json

import openstack.connection
import pytest
import requests_mock

from imgfac_nova.plugins import nova as plugin
from novaimagebuilder import cloud as cloudlib
from novaimagebuilder import errors
from novaimagebuilder.machines import nova
from novaimagebuilder.machines import nova_installer
from novaimagebuilder.machines import nova_servers
from novaimagebuilder.machines import nova_sweep
from novaimagebuilder.machines import nova_volumes
from tests.unit.test_nova_rescue import GLANCE
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import glance_images
from tests.unit.test_nova_rescue import nova_version

CINDER = "http://cinder.test/v3/"
TAGS = {cloudlib.BUILD_TAG: "b1", cloudlib.OWNER_TAG: "host:1"}


def server(status="ACTIVE", vm_state="active", power_state=1, task=None):
    return {"server": {"id": "srv1", "name": "imgfac-nova-b1-installer",
                       "status": status, "OS-EXT-STS:vm_state": vm_state,
                       "OS-EXT-STS:task_state": task,
                       "OS-EXT-STS:power_state": power_state,
                       "metadata": {cloudlib.BUILD_TAG: "b1"},
                       "addresses": {}, "accessIPv4": ""}}


def volume(status, vid="vol1", role="installer", server_id=None,
           image_metadata=None):
    metadata = dict(TAGS)
    if server_id:
        metadata[nova_volumes.SERVER_TAG] = server_id
    return {"id": vid, "name": "imgfac-nova-b1-%s-volume" % role,
            "status": status, "size": 3, "metadata": metadata,
            "volume_image_metadata": image_metadata or {}}


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.get(NOVA, json=nova_version())
        mock.get(GLANCE, json={"versions": [{
            "id": "v2.16", "status": "CURRENT",
            "links": [{"rel": "self", "href": GLANCE + "v2/"}]}]})
        mock.get(CINDER, json={"version": {
            "id": "v3.0", "status": "CURRENT", "version": "3.70",
            "min_version": "3.0",
            "links": [{"rel": "self", "href": CINDER}]}})
        mock.get(GLANCE + "v2/images", json={"images": []})
        mock.get(NOVA + "servers/detail", json={"servers": []})
        # Lists vol1 once it was made and until it is deleted.
        mock.get(CINDER + "volumes/detail", json=lambda request, context: {
            "volumes": [volume("available")] if made(mock, "vol1") else []})
        mock.post(CINDER + "volumes", status_code=202,
                  json={"volume": volume("creating")})
        mock.post(CINDER + "volumes/vol1/metadata", json={"metadata": {}})
        mock.post(CINDER + "volumes/vol1/action", json={})
        mock.delete(CINDER + "volumes/vol1", status_code=202)
        mock.patch(GLANCE + "v2/images/img1", json=image("active", 1234))
        yield mock


@pytest.fixture
def backend(cloud, monkeypatch):
    monkeypatch.setattr(nova_volumes, "wait_volume_gone",
                        lambda conn, vid: None)
    monkeypatch.setattr(nova_servers, "wait_server_gone", lambda conn, sid: None)
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": NOVA},
        compute_endpoint_override=NOVA, image_endpoint_override=GLANCE,
        block_storage_endpoint_override=CINDER)
    flavor = conn.compute._get_resource(
        openstack.compute.v2.flavor.Flavor, None, id="bfv", name="bfv",
        disk=0)
    made = nova.NovaBackend(conn, "b1", flavor, volume_size=3,
                            volume_type="ceph")
    made.owner = "host:1"
    return made


def volumes(cloud, *states, vid="vol1", **kwargs):
    cloud.get(CINDER + "volumes/%s" % vid,
              [{"json": {"volume": volume(s, vid, **kwargs)}}
               for s in states])


def made(cloud, vid):
    """Whether the cloud made volume ``vid`` (the first made) and has not
    deleted it."""
    history = [(r.method, r.path) for r in cloud.request_history]
    return ("POST", "/v3/volumes") in history and \
        ("DELETE", "/v3/volumes/" + vid) not in history


def requests(cloud, method, path):
    return [json.loads(r.body) if r.body else None
            for r in cloud.request_history
            if r.method == method and r.path == path]


URL_MEDIA = {"files": {"kernel": "/m/vmlinuz", "ramdisk": "/m/initrd"},
             "kernel": "k1", "ramdisk": "r1"}


def test_url_install_boots_from_a_tagged_volume_of_the_installer_disk(
        cloud, backend):
    glance_images(cloud, "disk1")
    volumes(cloud, "creating", "downloading", "available")
    cloud.post(NOVA + "servers", status_code=202, json=server())
    cloud.get(NOVA + "servers/srv1", json=server())

    machine = backend.boot_installer(URL_MEDIA, "poweroff\n", "kickstart",
                                     "console=x", None)

    assert machine.volume == "vol1"
    [made] = requests(cloud, "POST", "/v3/volumes")
    assert made["volume"] == {
        "name": "imgfac-nova-b1-installer-volume", "size": 3,
        "imageRef": "disk1", "volume_type": "ceph", "metadata": TAGS,
        "description": "imgfac-nova build b1"}
    [boot] = requests(cloud, "POST", "/v2.1/servers")
    assert "imageRef" not in boot["server"]
    assert boot["server"]["block_device_mapping_v2"] == [{
        "boot_index": 0, "uuid": "vol1", "source_type": "volume",
        "destination_type": "volume", "delete_on_termination": False}]
    assert boot["server"]["metadata"] == {cloudlib.BUILD_TAG: "b1",
                                          cloudlib.OWNER_TAG: "host:1"}
    assert requests(cloud, "POST", "/v3/volumes/vol1/metadata") == [
        {"metadata": {nova_volumes.SERVER_TAG: "srv1"}}]
    # The blank disk the volume is made from is the volume's size.
    assert len(requests(cloud, "GET", "/v3/volumes/vol1")) == 3


def test_a_volume_in_error_fails_in_one_line_and_is_deleted(cloud, backend):
    glance_images(cloud, "disk1")
    volumes(cloud, "creating", "error")

    with pytest.raises(errors.BuildError) as raised:
        backend.boot_installer(URL_MEDIA, "poweroff\n", "kickstart",
                               "console=x", None)

    assert str(raised.value) == (
        "waiting for volume imgfac-nova-b1-installer-volume (vol1) to "
        "become available: Cinder says it is error")
    assert not requests(cloud, "POST", "/v2.1/servers")
    deleted = [r.path for r in cloud.request_history if r.method == "DELETE"]
    assert deleted == ["/v3/volumes/vol1", "/v2/images/disk1"]


def test_a_volume_stuck_creating_fails_within_its_timeout(cloud, backend,
                                                          monkeypatch):
    monkeypatch.setattr(nova_volumes, "CREATE_TIMEOUT", 1)
    glance_images(cloud, "disk1")
    volumes(cloud, "creating")

    with pytest.raises(errors.WaitTimeout) as raised:
        backend.boot_installer(URL_MEDIA, "poweroff\n", "kickstart",
                               "console=x", None)

    assert str(raised.value) == ("volume imgfac-nova-b1-installer-volume "
                                 "(vol1) is still creating after 1 s")
    assert "/v3/volumes/vol1" in [r.path for r in cloud.request_history
                                  if r.method == "DELETE"]


def test_a_rerun_adopts_the_volume_and_the_installer(cloud, backend):
    glance_images(cloud, "disk1")
    cloud.get(CINDER + "volumes/detail", json={"volumes": [
        volume("in-use", server_id="srv1")]})
    cloud.get(NOVA + "servers/detail", json={"servers": [server()["server"]]})
    cloud.get(NOVA + "servers/srv1", json=server())

    machine = backend.boot_installer(URL_MEDIA, "poweroff\n", "kickstart",
                                     "console=x", None)

    assert (machine.id, machine.volume) == ("srv1", "vol1")
    assert not requests(cloud, "POST", "/v3/volumes")
    assert not requests(cloud, "POST", "/v2.1/servers")


def test_a_volume_of_another_server_is_deleted_not_adopted(cloud, backend):
    glance_images(cloud, "disk1")
    cloud.get(CINDER + "volumes/detail", json={"volumes": [
        volume("available", vid="old", server_id="gone")]})
    cloud.delete(CINDER + "volumes/old", status_code=202)
    volumes(cloud, "available")
    cloud.post(NOVA + "servers", status_code=202, json=server())
    cloud.get(NOVA + "servers/srv1", json=server())

    machine = backend.boot_installer(URL_MEDIA, "poweroff\n", "kickstart",
                                     "console=x", None)

    assert machine.volume == "vol1"
    assert [r.path for r in cloud.request_history
            if r.method == "DELETE"] == ["/v3/volumes/old"]


def test_iso_rescue_image_has_both_rescue_properties(backend):
    assert backend._rescue_properties() == {"hw_rescue_device": "cdrom",
                                            "hw_rescue_bus": "ide"}
    backend.volumes = None
    assert backend._rescue_properties() == nova_installer.RESCUE_AS_CDROM


def image(status, size=None):
    return {"id": "img1", "name": "imgfac-nova-b1-jeos", "status": status,
            "size": size, "imgfac_build_id": "b1", "imgfac_role": "jeos",
            "imgfac_owner": "host:1"}


def test_capture_deletes_the_server_and_uploads_its_volume(cloud, backend):
    held = dict(TAGS, kernel_id="k1", ramdisk_id="r1", os_command_line="x",
                imgfac_role="installer-disk", imgfac_jeos_key="old",
                min_disk="2", min_ram="512")
    volumes(cloud, "in-use", "available", "uploading", "uploading",
            "available", image_metadata=held)
    cloud.get(NOVA + "servers/srv1", json=server("SHUTOFF", "stopped", 4))
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    cloud.post(CINDER + "volumes/vol1/action", json={
        "os-volume_upload_image": {"image_id": "img1"}})
    cloud.get(GLANCE + "v2/images/img1", [{"json": image("queued")},
                                          {"json": image("saving")},
                                          {"json": image("active", 1234)}])
    machine = nova_servers.Server("srv1", "imgfac-nova-b1-installer", "installer",
                                  volume="vol1")

    assert backend.capture(machine, "jeos") == "img1"

    assert not [r for r in cloud.request_history
                if r.path == "/v2.1/servers/srv1/action"]  # no createImage
    actions = requests(cloud, "POST", "/v3/volumes/vol1/action")
    assert actions == [
        {"os-set_image_metadata": {"metadata": {"imgfac_role": "jeos"}}}
    ] + [{"os-unset_image_metadata": {"key": key}} for key in (
        "kernel_id", "ramdisk_id", "os_command_line", "imgfac_jeos_key")] + [
        {"os-volume_upload_image": {
            "image_name": "imgfac-nova-b1-jeos", "force": False,
            "disk_format": "qcow2", "container_format": "bare"}}]
    order = [(r.method, r.path) for r in cloud.request_history
             if r.method in ("DELETE", "POST")]
    assert order.index(("DELETE", "/v2.1/servers/srv1")) < order.index(
        ("POST", "/v3/volumes/vol1/action"))
    assert order[-1] == ("DELETE", "/v3/volumes/vol1")
    # Cinder gives the image no minimum sizes; Nova gives a snapshot the
    # larger min_disk of its source image and its root disk (the volume's
    # 3 GiB), and the source's min_ram.
    [sizes] = [json.loads(r.body) for r in cloud.request_history
               if r.method == "PATCH"]
    assert sorted((op["path"], op["value"]) for op in sizes) == [
        ("/min_disk", 3), ("/min_ram", 512)]


def test_a_volume_backed_server_is_deleted_once_nova_ended_its_task(
        cloud, backend):
    """Nova deletes a server whatever its task: the capture first waits
    until its last one (here the stop's powering-off) has ended."""
    volumes(cloud, "in-use", "available", "uploading", "available")
    cloud.get(NOVA + "servers/srv1", [
        {"json": server("SHUTOFF", "stopped", 4, "powering-off")},
        {"json": server("SHUTOFF", "stopped", 4)}])
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    cloud.post(CINDER + "volumes/vol1/action", json={
        "os-volume_upload_image": {"image_id": "img1"}})
    cloud.get(GLANCE + "v2/images/img1", json=image("active", 1234))
    machine = nova_servers.Server("srv1", "imgfac-nova-b1-installer", None,
                                  volume="vol1")

    assert backend.capture(machine, "jeos") == "img1"

    calls = [(r.method, r.path) for r in cloud.request_history
             if r.path == "/v2.1/servers/srv1"]
    assert calls == [("GET", "/v2.1/servers/srv1")] * 2 + [
        ("DELETE", "/v2.1/servers/srv1")]


def test_a_volume_stuck_uploading_fails_naming_it(cloud, backend,
                                                  monkeypatch):
    backend.snapshot_timeout = (1, 0)
    volumes(cloud, "available", "uploading")
    cloud.get(NOVA + "servers/srv1", json=server("SHUTOFF", "stopped", 4))
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    cloud.post(CINDER + "volumes/vol1/action", json={
        "os-volume_upload_image": {"image_id": "img1"}})
    cloud.get(GLANCE + "v2/images/img1", json=image("saving"))
    cloud.delete(GLANCE + "v2/images/img1", status_code=204)
    machine = nova_servers.Server("srv1", "installer", "installer", volume="vol1")

    with pytest.raises(errors.WaitTimeout) as raised:
        backend.capture(machine, "jeos")

    assert str(raised.value) == "volume vol1 is still uploading after 1 s"
    assert "/v2/images/img1" in [r.path for r in cloud.request_history
                                 if r.method == "DELETE"]


def test_adopt_finds_the_volume_of_a_server_and_of_a_deleted_one(
        cloud, backend):
    cloud.get(CINDER + "volumes/detail", json={"volumes": [
        volume("in-use", server_id="srv1")]})
    cloud.get(NOVA + "servers/srv1", json=server("SHUTOFF", "stopped", 4))
    assert backend.adopt("srv1").volume == "vol1"

    cloud.get(NOVA + "servers/srv1", status_code=404, json={})
    cloud.delete(NOVA + "servers/srv1", status_code=404, json={})
    left = backend.adopt("srv1")
    assert (left.id, left.volume) == ("srv1", "vol1")
    backend.delete(left)
    assert [r.path for r in cloud.request_history
            if r.method == "DELETE"] == ["/v2.1/servers/srv1",
                                         "/v3/volumes/vol1"]

    cloud.get(CINDER + "volumes/detail", json={"volumes": []})
    with pytest.raises(errors.Gone):
        backend.adopt("srv1")


def test_leftovers_list_tagged_volumes_and_their_snapshots(
        cloud, backend, monkeypatch):
    monkeypatch.setattr(nova_volumes, "has_volumes", lambda conn: True)
    conn = backend.conn
    conn.compute.servers = conn.network.ips = lambda **kw: []
    conn.network.security_groups = conn.network.ports = lambda **kw: []
    conn.compute.keypairs = conn.image.images = lambda **kw: []
    cloud.get(CINDER + "volumes/detail", json={"volumes": [
        volume("available"), dict(volume("available", vid="other"),
                                  metadata={})]})
    cloud.get(CINDER + "snapshots/detail", json={"snapshots": [
        {"id": "s1", "volume_id": "vol1", "status": "available"},
        {"id": "s2", "volume_id": "other", "status": "available"},
        {"id": "s3", "volume_id": "x", "status": "available",
         "metadata": {cloudlib.BUILD_TAG: "b2"}}]})

    found = nova_sweep.leftovers(conn)

    assert sorted((f.build, f.kind, f.id) for f in found) == [
        ("b1", "volume", "vol1"), ("b1", "volume snapshot", "s1"),
        ("b2", "volume snapshot", "s3")]


def flavor(disk):
    return openstack.compute.v2.flavor.Flavor(id="f", name="f", disk=disk)


class Conn:
    """What _disk asks of the cloud: its catalog and volume types."""

    def __init__(self, catalog=("block-storage",), types=("ceph",)):
        self.service_catalog = [{"type": t} for t in catalog]
        names = types

        class BlockStorage:
            @staticmethod
            def find_type(name):
                return object() if name in names else None

            @staticmethod
            def types():
                return [type("T", (), {"name": n}) for n in names]
        self.block_storage = BlockStorage()


def test_zero_disk_flavor_builds_on_volumes_of_the_disk_size():
    assert plugin._disk(Conn(), flavor(0), {}, None) == 10
    assert plugin._disk(Conn(), flavor(0), {"disk_size": 2}, None) == 2
    assert plugin._disk(Conn(), flavor(20), {"boot_from_volume": True,
                                             "volume_size": 5}, None) == 5
    assert plugin._disk(Conn(), flavor(20), {}, None) is None


@pytest.mark.parametrize("conn, parameters, error", [
    (Conn(catalog=()), {}, "boot_from_volume needs the cloud's block "
     "storage (Cinder), and this cloud's catalog has none"),
    (Conn(), {"volume_type": "ssd"},
     "Cinder has no volume type 'ssd' (types: ceph)"),
])
def test_volumes_the_cloud_cannot_make_are_one_line(conn, parameters, error):
    with pytest.raises(errors.BuildError) as raised:
        plugin._disk(conn, flavor(0), parameters, None)
    assert str(raised.value) == error


def test_a_disk_larger_than_the_flavor_is_refused_before_anything():
    with pytest.raises(errors.BuildError) as raised:
        plugin._disk(Conn(), flavor(4), {"disk_size": 6}, None)
    assert str(raised.value) == (
        "disk_size 6 GiB does not fit flavor f, whose root disk is 4 GiB "
        "(Nova refuses a larger image): choose a larger flavor, a smaller "
        "disk_size, or boot_from_volume")
    with pytest.raises(errors.BuildError) as raised:
        plugin._disk(Conn(), flavor(4), {"volume_type": "ceph"}, None)
    assert str(raised.value) == ("volume_type is for builds on volumes: set "
                                 "boot_from_volume true or leave volume_type "
                                 "out")


def test_the_shared_install_iso_gets_both_rescue_properties(cloud, backend):
    from tests.unit import test_glance_transfer
    digest = "d" * 64
    cloud.get(GLANCE + "v2/schemas/image", json=test_glance_transfer.SCHEMA)
    cloud.get(GLANCE + "v2/images", json={"images": [{
        "id": "iso1", "status": "active", "name": "iso",
        "hw_rescue_device": "cdrom"}]})
    cloud.patch(GLANCE + "v2/images/iso1", json={"id": "iso1"})
    cloud.get(GLANCE + "v2/images/iso1", json={"id": "iso1"})

    assert backend._media_image("iso", digest, None, "iso", "bare") == "iso1"

    [patch] = requests(cloud, "PATCH", "/v2/images/iso1")
    assert {op["path"]: op["value"] for op in patch} == {
        "/hw_rescue_bus": "ide", "/hw_rescue_device": "cdrom"}


def test_a_capture_that_deleted_its_server_goes_on_with_the_volume(
        cloud, backend):
    cloud.get(CINDER + "volumes/detail", json={"volumes": [
        volume("available", server_id="srv1")]})
    cloud.get(NOVA + "servers/srv1", status_code=404, json={})
    cloud.delete(NOVA + "servers/srv1", status_code=404, json={})
    volumes(cloud, "available", "uploading", "available")
    cloud.post(CINDER + "volumes/vol1/action", json={
        "os-volume_upload_image": {"image_id": "img1"}})
    cloud.get(GLANCE + "v2/images/img1", json=image("active", 1234))

    machine = backend.adopt("srv1")
    assert backend.capture(machine, "jeos") == "img1"

    uploads = [a for a in requests(cloud, "POST", "/v3/volumes/vol1/action")
               if "os-volume_upload_image" in a]
    assert len(uploads) == 1
    assert ("DELETE", "/v3/volumes/vol1") in [
        (r.method, r.path) for r in cloud.request_history]

"""The machine a Nova build's system is made for: the installer disk
carries its properties (firmware, CPU traits), which Nova gives the
installer and copies to the snapshots; the image gets the derived
properties, min_disk and min_ram (REST conversations of the real
openstacksdk, as in test_nova_rescue)."""
import json

import openstack.connection
import pytest

from novaimagebuilder.machines import nova
from novaimagebuilder.machines import nova_servers
from tests.unit import test_nova_rescue as rescue
from tests.unit.test_nova_rescue import cloud  # noqa: F401 (fixture)

UEFI = {"hw_firmware_type": "uefi", "hw_machine_type": "q35",
        "os_secure_boot": "required"}


def _backend(**kwargs):
    conn = rescue.connect()
    flavor = conn.compute._get_resource(
        openstack.compute.v2.flavor.Flavor, None, id="1", name="1", disk=2,
        ram=768, vcpus=1)
    return nova.NovaBackend(conn, "b1", flavor, config_drive=True, **kwargs)


def test_installer_disk_carries_the_machine_with_the_boot_properties(
        cloud):  # noqa: F811
    rescue.glance_images(cloud, "disk1")
    cloud.post(rescue.NOVA + "servers", status_code=202, json=rescue.ACTIVE)
    rescue.servers(cloud, rescue.ACTIVE)
    backend = _backend(machine_properties=UEFI)
    media = {"files": {"kernel": "/m/vmlinuz", "ramdisk": "/m/initrd"},
             "kernel": "k1", "ramdisk": "r1", "sha256": {}}

    backend.boot_installer(media, "script", "kickstart", "console=x", None)

    disk = next(json.loads(r.body) for r in cloud.request_history
                if r.method == "POST" and r.path == "/v2/images")
    assert {key: disk.get(key) for key in list(UEFI) + [
        "kernel_id", "ramdisk_id"]} == dict(UEFI, kernel_id="k1",
                                            ramdisk_id="r1")


def test_the_machine_is_part_of_the_jeos_key(cloud):  # noqa: F811
    assert "machine" not in _backend().jeos_scope()
    assert _backend(machine_properties=UEFI).jeos_scope()["machine"] == UEFI


@pytest.mark.parametrize("virtual_size,min_disk", [
    (3 * 1024 ** 3 + 1, 4), (None, 2)])  # Glance's size, else the flavor's
def test_image_gets_its_properties_min_disk_and_min_ram(
        cloud, virtual_size, min_disk):  # noqa: F811
    cloud.post(rescue.NOVA + "servers/srv1/action", status_code=202,
               json={"image_id": "img1"})
    image = {"id": "img1", "status": "active", "name": "img",
             "virtual_size": virtual_size}
    cloud.get(rescue.GLANCE + "v2/images/img1", json=image)
    cloud.patch(rescue.GLANCE + "v2/images/img1", json=image)
    rescue.servers(cloud, rescue.SHUTOFF)  # Nova's task on it has ended
    backend = _backend(image_properties={"os_distro": "debian"},
                       machine_properties=UEFI)

    assert backend.capture(nova_servers.Server("srv1", "guest", None), "image") \
        == "img1"

    patch = [op for r in cloud.request_history if r.method == "PATCH"
             for op in json.loads(r.body)]
    assert {op["path"]: op["value"] for op in patch} == {
        "/os_distro": "debian", "/visibility": "private",
        "/min_disk": min_disk, "/min_ram": 768}

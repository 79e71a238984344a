"""Cinder volumes of the test cloud, on its Ceph, as Nova's servers' disks.

As the non-admin user: a volume made from the guest image (Cinder's RBD
driver), a server booted from it with the zero-disk flavor `bfv` (QEMU opens
the RBD image itself), a second volume attached to and detached from the
running guest, and nothing left in the `volumes` pool afterwards. Plus what
Nova does with zero-disk flavors and volume-backed servers, seen here as on
any Nova: an image-backed boot is refused (403), `createImage` makes a
0-byte image over Cinder snapshots, rescue needs both rescue properties,
and a capture must go in the order Nova and Cinder impose (no action while
the server has a task, no upload or user detach of a volume in use).
"""
import json
import socket
import uuid

import openstack
import paramiko
import pytest

from tests import poll
from tests.functional.test_cloud_servers import (
    GUEST_IMAGE, NETWORK, fixed_ip, run, ssh_connect, wait_status)
from tests.functional.test_iso_installs import qemu_devices

ZERO_DISK_FLAVOR = "bfv"
POOL = "volumes"
VOLUME_GIB = 4          # the guest image is 3 GiB
VOLUME_TIMEOUT = 300    # download + convert + import of the guest image


@pytest.fixture(scope="module")
def guest_key():
    return paramiko.RSAKey.generate(2048)


@pytest.fixture
def keypair(conn, cleanup, unique_name, guest_key):
    pair = conn.compute.create_keypair(
        name=unique_name,
        public_key="%s %s" % (guest_key.get_name(), guest_key.get_base64()))
    cleanup.append(lambda: conn.compute.delete_keypair(pair))
    return pair


@pytest.fixture
def guest_image(conn):
    return conn.image.find_image(GUEST_IMAGE, ignore_missing=False)


def rbd_images(rbd):
    return set(rbd("ls", POOL).decode().split())


def create_volume(conn, cleanup, name, size, **kwargs):
    volume = conn.block_storage.create_volume(name=name, size=size, **kwargs)
    cleanup.append(lambda: delete_volume(conn, volume))
    return conn.block_storage.wait_for_status(
        volume, "available", failures=["error"], wait=VOLUME_TIMEOUT,
        interval=2)


def delete_volume(conn, volume):
    conn.block_storage.delete_volume(volume, ignore_missing=True)
    conn.block_storage.wait_for_delete(volume, wait=120)


def boot_from_volume(conn, cleanup, name, volume, **kwargs):
    network = conn.network.find_network(NETWORK, ignore_missing=False)
    server = conn.compute.create_server(
        name=name, flavor_id=conn.compute.find_flavor(
            ZERO_DISK_FLAVOR, ignore_missing=False).id,
        networks=[{"uuid": network.id}],
        block_device_mapping=[{
            "boot_index": 0, "uuid": volume.id, "source_type": "volume",
            "destination_type": "volume", "delete_on_termination": False}],
        **kwargs)
    cleanup.append(lambda: delete_server(conn, server))
    return wait_status(conn, server, "ACTIVE", 180)


def delete_server(conn, server):
    conn.compute.delete_server(server, ignore_missing=True)
    conn.compute.wait_for_delete(server, wait=120)


def guest_device(client, volume):
    """The guest's disk of a volume, found by its serial (virtio keeps 20
    characters of the volume id), or ''."""
    _, out = run(client, "for d in /sys/block/*; do [ \"$(cat $d/serial "
                 "2>/dev/null)\" = %s ] && echo /dev/${d##*/}; done; true"
                 % volume.id[:20])
    return out.strip()


def test_boot_from_volume_attach_detach_and_nothing_left(
        conn, rbd, cleanup, unique_name, keypair, guest_key, guest_image):
    root = create_volume(conn, cleanup, unique_name, VOLUME_GIB,
                         image_id=guest_image.id)
    assert root.is_bootable
    assert root.volume_image_metadata["image_id"] == guest_image.id
    assert "volume-" + root.id in rbd_images(rbd)

    server = boot_from_volume(conn, cleanup, unique_name, root,
                              key_name=keypair.name, config_drive=True)
    assert not server.image or not server.image.get("id")
    assert conn.block_storage.get_volume(root).status == "in-use"
    # The root disk is the RBD image, opened by QEMU (no host mapping).
    devices = qemu_devices(server.id)
    assert devices[0][1].startswith("rbd:%s/volume-%s:" % (POOL, root.id))
    assert "bootindex=1" in devices[0][0]
    address = fixed_ip(server)
    with ssh_connect(address, guest_key) as client:
        assert guest_device(client, root) == "/dev/vda"
        status, out = run(client, "findmnt -no SOURCE /")
        assert status == 0 and out.startswith("/dev/vda"), out

        data = create_volume(conn, cleanup, unique_name + "-data", 1)
        conn.compute.create_volume_attachment(server, data)
        conn.block_storage.wait_for_status(data, "in-use", failures=["error"],
                                           wait=120, interval=1)
        device = poll.wait_for(lambda: guest_device(client, data), 60,
                               "the attached volume in the guest")
        marker = "imgfac-%s" % uuid.uuid4().hex
        status, out = run(client, "sudo -n blockdev --getsize64 %s && "
                          "echo %s | sudo -n dd of=%s oflag=direct "
                          "conv=fsync bs=512 count=1 status=none"
                          % (device, marker, device))
        assert status == 0, out
        assert out.split()[0] == str(1024 ** 3)

        conn.compute.delete_volume_attachment(server, data)
        conn.block_storage.wait_for_status(data, "available",
                                           failures=["error"], wait=120,
                                           interval=1)
        assert guest_device(client, data) == ""
    assert all(data.id not in f for _, f in qemu_devices(server.id))
    # What the guest wrote went to Ceph.
    assert rbd("export", "%s/volume-%s" % (POOL, data.id),
               "-").startswith(marker.encode() + b"\n")
    assert "BEGIN SSH HOST KEY FINGERPRINTS" in \
        conn.compute.get_server_console_output(server)["output"]

    delete_server(conn, server)
    assert conn.block_storage.get_volume(root).status == "available"
    for volume in (root, data):
        delete_volume(conn, volume)
    left = rbd_images(rbd)
    assert "volume-" + root.id not in left
    assert "volume-" + data.id not in left


def test_zero_disk_flavor_refuses_an_image_backed_boot(conn, unique_name,
                                                       guest_image):
    network = conn.network.find_network(NETWORK, ignore_missing=False)
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.create_server(
            name=unique_name, image_id=guest_image.id,
            flavor_id=conn.compute.find_flavor(ZERO_DISK_FLAVOR,
                                               ignore_missing=False).id,
            networks=[{"uuid": network.id}])
    assert "Only volume-backed servers are allowed for flavors with zero " \
        "disk" in str(refused.value)
    assert not list(conn.compute.servers(name=unique_name))


@pytest.fixture(scope="module")
def volume_backed_server(conn):
    """One volume-backed server (ACTIVE; its guest need not be up):
    ``(server, root volume)``."""
    name = "imgfac-ft-" + uuid.uuid4().hex[:8]
    undo = []
    try:
        volume = create_volume(conn, undo, name, VOLUME_GIB,
                               image_id=conn.image.find_image(
                                   GUEST_IMAGE, ignore_missing=False).id)
        server = boot_from_volume(conn, undo, name, volume)
        yield server, volume
    finally:
        for each in reversed(undo):
            each()


def test_create_image_of_a_volume_backed_server_is_a_0_byte_image(
        conn, cleanup, unique_name, volume_backed_server):
    server, volume = volume_backed_server
    image = conn.compute.create_server_image(server, unique_name, wait=True,
                                             timeout=300)
    image = conn.image.get_image(image)
    # Nova stores the mappings as a JSON property of the image.
    mappings = json.loads(image.properties["block_device_mapping"])
    for mapping in mappings:
        cleanup.append(lambda s=mapping["snapshot_id"]: delete_snapshot(
            conn, s))
    cleanup.append(lambda: conn.image.delete_image(image))
    assert image.status == "active"
    assert not image.size
    assert image.properties.get("bdm_v2") in (True, "True")
    assert [m["source_type"] for m in mappings] == ["snapshot"]
    snapshot = conn.block_storage.wait_for_status(
        conn.block_storage.get_snapshot(mappings[0]["snapshot_id"]),
        "available", failures=["error"], wait=120, interval=1)
    assert snapshot.volume_id == volume.id


def delete_snapshot(conn, snapshot_id):
    conn.block_storage.delete_snapshot(snapshot_id, ignore_missing=True)
    poll.wait_for(lambda: conn.block_storage.find_snapshot(snapshot_id)
                  is None, 120, "volume snapshot %s deleted" % snapshot_id)


def test_attach_and_detach_while_the_server_is_stopped(
        conn, cleanup, unique_name, volume_backed_server):
    """A stopped server gets the volume at its next start, and loses it."""
    server, _ = volume_backed_server
    data = create_volume(conn, cleanup, unique_name, 1)

    def restart_with(change):
        # A guest still booting ignores ACPI: stop would wait 60 s for it.
        wait_booted(conn, server)
        conn.compute.stop_server(server)
        wait_status(conn, server, "SHUTOFF", 120)
        change()
        conn.compute.start_server(server)
        wait_status(conn, server, "ACTIVE", 120)
        return [f for _, f in qemu_devices(server.id)]

    files = restart_with(lambda: (
        conn.compute.create_volume_attachment(server, data),
        conn.block_storage.wait_for_status(data, "in-use", failures=["error"],
                                           wait=120, interval=1)))
    assert files[-1].startswith("rbd:%s/volume-%s:" % (POOL, data.id))
    files = restart_with(lambda: (
        conn.compute.delete_volume_attachment(server, data),
        conn.block_storage.wait_for_status(data, "available",
                                           failures=["error"], wait=120,
                                           interval=1)))
    assert all(data.id not in f for f in files)


def wait_booted(conn, server):
    """Wait until the guest's sshd answers (its boot is done)."""
    address = fixed_ip(conn.compute.get_server(server.id))

    def banner():
        try:
            with socket.create_connection((address, 22), 2) as sock:
                sock.settimeout(5)
                return sock.recv(4) == b"SSH-"
        except OSError:
            return False
    poll.wait_for(banner, 300, "the SSH banner of %s" % address, interval=2)


def rescue(conn, server, image_id):
    """Rescue at microversion 2.87 (volume-backed rescue); the response."""
    return conn.compute.post(
        "/servers/%s/action" % server.id,
        json={"rescue": {"rescue_image_ref": image_id}}, microversion="2.87")


def test_volume_backed_rescue_needs_both_rescue_properties(
        conn, admin_conn, cleanup, unique_name, volume_backed_server):
    server, volume = volume_backed_server
    provider = next(admin_conn.placement.resource_providers(
        name=admin_conn.compute.get_server(server.id).hypervisor_hostname))
    traits = admin_conn.placement.get(
        "/resource_providers/%s/traits" % provider.id,
        microversion="1.6").json()["traits"]
    assert "COMPUTE_RESCUE_BFV" in traits

    def blank_image(**properties):
        image = conn.image.create_image(
            name=unique_name, disk_format="raw", container_format="bare",
            data=b"\0" * 1024 * 1024, **properties)
        cleanup.append(lambda: conn.image.delete_image(image))
        return image

    only_device = blank_image(hw_rescue_device="disk")
    refused = rescue(conn, server, only_device.id)
    assert refused.status_code == 400, refused.text
    assert "Cannot rescue a volume-backed instance" in refused.text

    both = blank_image(hw_rescue_device="disk", hw_rescue_bus="virtio")
    before = qemu_devices(server.id)
    accepted = rescue(conn, server, both.id)
    assert accepted.status_code == 200, accepted.text
    wait_status(conn, server, "RESCUE", 120)
    rescued = qemu_devices(server.id)
    # The volume stays, without a boot index; the rescue disk boots.
    assert [f for _, f in rescued[:-1]] == [f for _, f in before]
    assert rescued[0][1].startswith("rbd:%s/volume-%s:" % (POOL, volume.id))
    assert "bootindex" not in rescued[0][0]
    assert "bootindex=0" in rescued[-1][0]
    conn.compute.unrescue_server(server)
    wait_status(conn, server, "ACTIVE", 120)
    assert qemu_devices(server.id) == before


def test_a_volume_backed_server_is_captured_in_the_order_nova_imposes(
        conn, unique_name, volume_backed_server):
    """What a volume-backed capture (novaimagebuilder.machines.nova_volumes)
    relies on, enforced here as by any Nova and Cinder: Nova takes no next
    action while the server has a task (here the stop's powering-off);
    Cinder uploads no volume in use (force is ignored without
    enable_force_upload) and lets no user detach a server's volume (only
    Nova may, Bug #2004555): the server is deleted first."""
    server, volume = volume_backed_server
    wait_booted(conn, server)  # its stop then waits for the guest (ACPI)
    conn.compute.stop_server(server)
    try:
        busy = conn.compute.post("/servers/%s/action" % server.id,
                                 json={"createImage": {"name": unique_name}})
        assert busy.status_code == 409, busy.text
        assert "while it is in task_state powering-off" in busy.text
        wait_status(conn, server, "SHUTOFF", 120)
        upload = conn.block_storage.post(
            "/volumes/%s/action" % volume.id, json={"os-volume_upload_image": {
                "image_name": unique_name, "force": True,
                "disk_format": "qcow2", "container_format": "bare"}})
        assert upload.status_code == 400, upload.text
        assert "must be available" in upload.text
        [attachment] = conn.block_storage.get_volume(volume).attachments
        detach = conn.block_storage.delete(
            "/attachments/%s" % attachment["attachment_id"],
            microversion="3.27")
        assert detach.status_code == 409, detach.text
        assert "using the Compute API" in detach.text
        assert conn.block_storage.get_volume(volume).status == "in-use"
    finally:
        wait_status(conn, server, "SHUTOFF", 120)
        conn.compute.start_server(server)
        wait_status(conn, server, "ACTIVE", 120)

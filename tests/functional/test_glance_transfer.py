"""Image bytes to and from the test cloud's Glance through novaimagebuilder:
install media uploaded once, hashed while read and checked against Glance's
hash, reused by digest, not a leftover; and downloaded back intact."""
import hashlib
import os
import socket
import struct

from novaimagebuilder import cloud
from novaimagebuilder.images import download
from novaimagebuilder.images import glance
from novaimagebuilder.machines import nova
from novaimagebuilder.machines import nova_sweep


def _iso(path, size=3 * 1024 ** 2):
    """An ISO 9660 image as far as Glance's format check looks."""
    descriptor = bytearray(2048)
    descriptor[0:7] = b"\x01CD001\x01"
    descriptor[128:132] = struct.pack("<H", 2048) + struct.pack(">H", 2048)
    data = bytes(32 * 1024) + bytes(descriptor)
    data += os.urandom(size - len(data))
    path.write_bytes(data)
    return data


def test_install_media_upload_checked_reused_and_kept(conn, tmp_path,
                                                      cleanup):
    data = _iso(tmp_path / "media.iso")
    digest = hashlib.sha256(data).hexdigest()
    backend = nova.NovaBackend(conn, "ft-media-" + digest[:8], None)
    made = []

    def make():
        made.append(1)
        return str(tmp_path / "media.iso")

    image_id = backend._media_image("iso", digest, make, "iso", "bare")
    cleanup.append(lambda: conn.image.delete_image(image_id,
                                                   ignore_missing=True))
    image = conn.image.get_image(image_id)
    assert image.status == "active" and image.size == len(data)
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    props = image.properties
    assert props[cloud.ROLE] == "media" and props[cloud.MEDIA_SHA256] == digest
    assert props["hw_rescue_device"] == "cdrom"
    # The next build reuses it; a sweep leaves the shared media alone.
    assert backend._media_image("iso", digest, make, "iso",
                                "bare") == image_id
    assert made == [1]
    assert image_id not in {found.id for found in nova_sweep.leftovers(conn)}

    client = glance.client(conn.session, region=conn.config.region_name,
                           interface=conn.config.interface)
    download.download(client, image_id, str(tmp_path / "back.iso"))
    assert (tmp_path / "back.iso").read_bytes() == data


class _Recording:
    """The real glanceclient images API, keeping Glance's answer to the
    create (the image as it is while its bytes move)."""

    def __init__(self, images):
        self._images, self.created = images, None

    def __getattr__(self, name):
        return getattr(self._images, name)

    def create(self, **kwargs):
        self.created = self._images.create(**kwargs)
        return self.created


def test_upload_is_owned_while_it_runs_and_not_after(conn, tmp_path,
                                                     cleanup, unique_name):
    # A sweep from another image store must see a live upload's owner (it
    # removed a provider push half-way before); the result keeps no owner.
    _iso(tmp_path / "push.iso")
    client = glance.client(conn.session, region=conn.config.region_name,
                           interface=conn.config.interface)
    client.images = _Recording(client.images)
    image = glance.upload(client, str(tmp_path / "push.iso"),
                          unique_name, "iso", "bare",
                          properties={cloud.BUILD_TAG: unique_name})
    cleanup.append(lambda: conn.image.delete_image(image.id,
                                                   ignore_missing=True))
    assert client.images.created.id == image.id
    assert client.images.created[cloud.OWNER_TAG] == "%s:%d" % (
        socket.gethostname(), os.getpid())
    assert client.images.created[cloud.ROLE] == "upload"
    props = conn.image.get_image(image.id).properties
    assert cloud.OWNER_TAG not in props and props[cloud.ROLE] == "image"

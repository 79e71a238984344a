"""A Glance image copied to a Glance on the test cloud in one pass
(transfer.copy and the provider push of a target made in the cloud): its
download taken up after a dropped connection, a damaged download failing in
one line with nothing left at the destination."""
import contextlib
import hashlib
import os
import socket
import threading

import pytest

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder.images import transfer
from tests.functional import databases
from tests.functional import test_glance_transfer

GLANCE_PORT = 9292
SIZE = 24 * 1024 ** 2


class DownloadProxy:
    """A TCP proxy to the test cloud's Glance for image downloads: the first
    download's answer is cut after ``cut`` bytes, or each one has the byte at
    ``flip`` (counted from the start of the answer's body) changed."""

    def __init__(self, cut=None, flip=None):
        self.cut, self.flip, self.downloads = cut, flip, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,),
                             daemon=True).start()

    def _serve(self, client):
        upstream = socket.create_connection(("127.0.0.1", GLANCE_PORT))
        with contextlib.suppress(OSError):
            head = client.recv(65536)
            self.downloads.append(head.split(b"\r\n", 1)[0])
            upstream.sendall(head)
            threading.Thread(target=self._pipe, args=(client, upstream),
                             daemon=True).start()
            first = len(self.downloads) == 1
            body, header = 0, b""
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if header is not None:
                    header += data
                    if b"\r\n\r\n" not in header:
                        continue
                    data = header[header.index(b"\r\n\r\n") + 4:]
                    client.sendall(header[:len(header) - len(data)])
                    header = None
                if self.cut is not None and first and \
                        body + len(data) > self.cut:
                    client.sendall(data[:self.cut - body])
                    break
                if self.flip is not None and \
                        body <= self.flip < body + len(data):
                    at = self.flip - body
                    data = data[:at] + bytes([data[at] ^ 0xFF]) + \
                        data[at + 1:]
                body += len(data)
                client.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @staticmethod
    def _pipe(source, destination):
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                destination.sendall(data)

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def source_image(conn, tmp_path_factory):
    """An ISO image in the test cloud's Glance: ``(image, bytes)``."""
    path = tmp_path_factory.mktemp("copy") / "source.iso"
    data = test_glance_transfer._iso(path, SIZE)
    client = glance.of(conn)
    image = glance.upload(client, str(path), "imgfac-ft-copy-source",
                          "iso", "bare")
    yield image, data
    glance.delete(client, image.id)


def _ours(conn, name):
    return [image.id for image in conn.image.images(name=name)]


def test_copy_takes_a_dropped_download_up_where_it_stopped(
        conn, source_image, unique_name, cleanup, caplog):
    caplog.set_level("INFO", logger="novaimagebuilder.images.transfer")
    image, data = source_image
    proxy = DownloadProxy(cut=5 * 1024 ** 2 + 4321)
    try:
        source = glance.client(conn.session,
                               endpoint="http://127.0.0.1:%d" % proxy.port)
        copied = transfer.copy(source, image, glance.of(conn),
                               unique_name, "iso", "bare",
                               properties={cloud.BUILD_TAG: unique_name})
    finally:
        proxy.close()
    cleanup.append(lambda: conn.image.delete_image(copied.id))
    assert copied.id != image.id and copied.status == "active"
    assert copied["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert [line.split()[0] for line in proxy.downloads] == [b"GET", b"GET"]
    assert "the connection dropped at byte " in caplog.text
    assert "taking it up there (1 of 5)" in caplog.text


def test_a_damaged_copy_fails_in_one_line_and_leaves_nothing(
        conn, source_image, unique_name):
    image, _ = source_image
    proxy = DownloadProxy(flip=3 * 1024 ** 2)
    try:
        source = glance.client(conn.session,
                               endpoint="http://127.0.0.1:%d" % proxy.port)
        with pytest.raises(errors.BuildError) as raised:
            transfer.copy(source, image, glance.of(conn), unique_name,
                          "iso", "bare")
    finally:
        proxy.close()
    assert _ours(conn, unique_name) == []
    message = str(raised.value)
    assert message.startswith("Glance image %s on the source cloud arrived "
                              "damaged: its sha512 is %s, the data's is "
                              % (image.id, image["os_hash_value"])), message
    assert "\n" not in message
    assert _ours(conn, unique_name) == []


def _push(image, tmp_path, parameters):
    """Push a target record whose image is the Glance ``image`` to the test
    cloud, as the provider plugin does: the push's record (the store)."""
    import threading as _threading
    from imgfac_nova import images
    from imgfac_nova import jobs
    from imgfac_nova.plugins import formats
    target = images.ImageRecord(
        type=images.TARGET_IMAGE, status=images.COMPLETE, properties={
            "disk_format": "iso", "container_format": "bare",
            images.GLANCE_ID_PROPERTY: image.id,
            "glance_cloud": {"cloud": "imgfac-test"},
            "os_hash_value": image["os_hash_value"]})
    pushed = images.ImageRecord(type=images.PROVIDER_IMAGE)
    records = databases.image_store(tmp_path / "store")
    records.add(pushed)
    ctx = jobs.BuildContext(records, pushed.identifier, _threading.Event())
    plugin = formats.DiskFormats()
    parameters = dict({"upload_timeout": 600, "upload_timeout_per_gib": 120},
                      **parameters)
    plugin.check_provider("@imgfac-test", None, parameters)
    try:
        plugin.push_image_to_provider(ctx, "@imgfac-test", None, target,
                                      parameters)
    finally:
        found = records.get(pushed.identifier)
    return found


def test_provider_push_of_a_cloud_image_streams_it(
        conn, source_image, test_cloud, tmp_path, monkeypatch, unique_name,
        cleanup, caplog):
    """The provider plugin's path for a target made in the cloud, pushed
    under another name (so not handed over): copied in one pass, no file
    left."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", test_cloud.clouds_yaml)
    caplog.set_level("INFO", logger="novaimagebuilder.images.glance")
    image, data = source_image
    result = _push(image, tmp_path, {"image_name": unique_name})
    copied = result.identifier_on_provider
    cleanup.append(lambda: conn.image.delete_image(copied))
    assert copied not in (None, image.id)
    found = conn.image.get_image(copied)
    assert found.status == "active" and found.name == unique_name
    assert found.hash_value == hashlib.sha512(data).hexdigest()
    assert found.properties[cloud.BUILD_TAG] == result.identifier
    assert result.properties["os_hash_value"] == found.hash_value
    assert "Uploading %d bytes to Glance image %s" % (len(data), copied) \
        in caplog.text
    assert not [name for name in os.listdir(tmp_path / "store")
                if ".part" in name or ".body" in name]


def test_stores_asked_for_are_filled_by_glance_or_refused_in_one_line(
        conn, source_image, test_cloud, tmp_path, monkeypatch):
    """The push handed over (same cloud and project): the test cloud's one
    store already holds the image; another store needs copy-image, which
    this Glance does not offer."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", test_cloud.clouds_yaml)
    image, _ = source_image
    held = _push(image, tmp_path / "held", {"glance_stores": "file"})
    assert held.identifier_on_provider == image.id
    with pytest.raises(errors.BuildError) as raised:
        _push(image, tmp_path / "other", {"glance_stores": "file,ceph2"})
    assert str(raised.value) == (
        "Glance image %s is not in store(s) ceph2, and this Glance does not "
        "offer copy-image to put it there (it offers: glance-direct, "
        "web-download)" % image.id)
    assert conn.image.get_image(image.id).status == "active"


def test_an_upload_cut_once_is_sent_again(conn, tmp_path, unique_name,
                                          cleanup, caplog):
    from tests.functional.test_cloud_plugins import CuttingProxy
    caplog.set_level("INFO", logger="novaimagebuilder.retries")
    data = test_glance_transfer._iso(tmp_path / "cut.iso", SIZE)
    proxy = CuttingProxy(times=1)
    try:
        client = glance.client(conn.session,
                               endpoint="http://127.0.0.1:%d" % proxy.port)
        image = glance.upload(client, str(tmp_path / "cut.iso"),
                              unique_name, "iso", "bare")
    finally:
        proxy.close()
    cleanup.append(lambda: conn.image.delete_image(image.id))
    assert proxy.cut == 1
    assert image.status == "active" and image.size == len(data)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert "it was not done; sending it again" in caplog.text
    assert _ours(conn, unique_name) == [image.id]

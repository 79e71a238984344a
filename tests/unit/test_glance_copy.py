"""A Glance image copied to another Glance in one pass (transfer.copy), with
the real glanceclient over requests-mock: the bytes stream from the
source's download to the destination's upload, a dropped download is taken
up where it stopped, a damaged one fails in one line and leaves no image,
and web-download is asked for when the destination offers it and the
source has an http location."""
import hashlib
import io
import json
import os

import pytest
import requests_mock
from keystoneauth1 import session

from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder.images import streams
from novaimagebuilder.images import transfer

SOURCE, DEST = "http://source.test", "http://dest.test"
IMAGE, COPY = "0b3b6a5e-2b43-4d5e-9a1f-7d3c1c0e9a11", \
    "7c1e3d44-93a2-4bb0-8f0e-5d6a3c9b2e10"
SCHEMA = {"name": "image", "links": [], "additionalProperties":
          {"type": "string"}, "properties": {
              "id": {"type": "string"}, "status": {"type": "string"},
              "name": {"type": "string"},
              "size": {"type": ["null", "integer"]},
              "min_disk": {"type": "integer"},
              "min_ram": {"type": "integer"},
              "visibility": {"type": "string"},
              "direct_url": {"type": "string"},
              "stores": {"type": "string"},
              "disk_format": {"type": ["null", "string"]},
              "container_format": {"type": ["null", "string"]},
              "os_hash_algo": {"type": ["null", "string"]},
              "os_hash_value": {"type": ["null", "string"]}}}


class Dropping(io.RawIOBase):
    """A response body whose connection resets after ``cut`` bytes."""

    def __init__(self, data, cut):
        self.data, self.cut, self.at = data, cut, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.at >= self.cut:
            raise ConnectionResetError(104, "Connection reset by peer")
        chunk = self.data[self.at:min(self.cut, self.at + len(buffer))]
        buffer[:len(chunk)] = chunk
        self.at += len(chunk)
        return len(chunk)


class Glances:
    """The source and destination Glance: the source serves ``data`` (its
    first download cut at ``cut`` bytes when given, answering Range
    requests); the destination keeps what is uploaded to it."""

    def __init__(self, mocker, data, digest=None, cut=None, methods=(),
                 direct_url=None):
        self.data, self.cut = data, cut
        self.downloads, self.received, self.status = [], b"", "queued"
        self.deleted, self.imports = [], []
        digest = digest or hashlib.sha512(data).hexdigest()
        source = {"id": IMAGE, "status": "active", "size": len(data),
                  "disk_format": "raw", "container_format": "bare",
                  "os_hash_algo": "sha512", "os_hash_value": digest}
        if direct_url:
            source["direct_url"] = direct_url
        for url in (SOURCE, DEST):
            mocker.get(url + "/v2/schemas/image", json=SCHEMA)
        mocker.get(SOURCE + "/v2/images/" + IMAGE, json=source)
        mocker.get(SOURCE + "/v2/images/%s/file" % IMAGE, body=self.serve)
        mocker.get(DEST + "/v2/info/import", json={"import-methods": {
            "value": list(methods)}})
        mocker.post(DEST + "/v2/images", json=self.created, status_code=201)
        mocker.put(DEST + "/v2/images/%s/file" % COPY, text=self.upload,
                   status_code=204)
        mocker.post(DEST + "/v2/images/%s/import" % COPY, text=self.web,
                    status_code=202)
        mocker.get(DEST + "/v2/images/" + COPY, json=self.image)
        mocker.patch(DEST + "/v2/images/" + COPY, json=self.image)
        mocker.delete(DEST + "/v2/images/" + COPY, text=self.delete,
                      status_code=204)

    def serve(self, request, context):
        start = 0
        if "Range" in request.headers:
            start = int(request.headers["Range"][6:-1])
            context.status_code = 206
        self.downloads.append(start)
        context.headers["Content-Type"] = "application/octet-stream"
        body = self.data[start:]
        if self.cut is not None and len(self.downloads) == 1:
            return Dropping(body, self.cut)
        return io.BytesIO(body)

    def created(self, request, context):
        self.props = request.json()
        return self.image(request, context)

    def upload(self, request, context):
        self.received = b"".join(request.body)
        # sent with its length, not in HTTP chunks (glance_put)
        assert request.headers["Content-Length"] == str(len(self.received))
        assert "Transfer-Encoding" not in request.headers
        self.status = "active"
        return ""

    def web(self, request, context):
        self.imports.append(json.loads(request.body)["method"]["name"])
        self.received, self.status = self.data, "active"
        return ""

    def delete(self, request, context):
        self.deleted.append(COPY)
        return ""

    def image(self, request, context):
        found = {"id": COPY, "name": "copy", "status": self.status,
                 "disk_format": "raw", "container_format": "bare"}
        if self.status == "active":
            found.update(size=len(self.received), os_hash_algo="sha512",
                         os_hash_value=hashlib.sha512(
                             self.received).hexdigest())
        return found


class Mock(requests_mock.Adapter):
    """requests-mock mounted on the test's sessions only: its Mocker holds
    one lock through each request, and the copy downloads while it
    uploads."""

    def __getattr__(self, method):
        return lambda url, **kwargs: self.register_uri(method.upper(), url,
                                                       **kwargs)


MOCK = Mock()


def _session():
    found = session.Session()
    found.session.mount("http://", MOCK)
    return found


@pytest.fixture(autouse=True)
def _fresh_mock():
    global MOCK
    MOCK = Mock()


def _copy(progress=None):
    source = glance.client(_session(), endpoint=SOURCE)
    dest = glance.client(_session(), endpoint=DEST)
    return transfer.copy(source, source.images.get(IMAGE), dest,
                         "copy", "raw", "bare",
                         where="the source cloud", progress=progress,
                         properties={"imgfac_build_id": "b1"})


def _data(size):
    return bytes(512) + os.urandom(size - 512)


def test_copy_streams_the_bytes_and_checks_them():
    data = _data(5 * streams.CHUNK + 7)
    seen = []
    glances = Glances(MOCK, data)
    image = _copy(progress=lambda percent, done: seen.append(percent))
    assert image.id == COPY and glances.received == data
    assert glances.downloads == [0]
    assert seen[-1] == 100
    assert glances.props["imgfac_build_id"] == "b1"


def test_a_dropped_download_is_taken_up_where_it_stopped(caplog):
    caplog.set_level("INFO", logger="novaimagebuilder.images.transfer")
    data = _data(6 * streams.CHUNK)
    cut = 2 * streams.CHUNK + 12345
    glances = Glances(MOCK, data, cut=cut)
    _copy()
    assert glances.received == data
    # Taken up after the last whole chunk that arrived, not from the start.
    start, resumed = glances.downloads
    assert start == 0 and cut - streams.CHUNK < resumed <= cut
    assert "the connection dropped at byte %d" % resumed in caplog.text


def test_a_damaged_download_fails_in_one_line_and_leaves_no_image():
    data = _data(3 * streams.CHUNK)
    glances = Glances(MOCK, data, digest=hashlib.sha512(
        b"other").hexdigest())
    with pytest.raises(errors.BuildError) as raised:
        _copy()
    message = str(raised.value)
    assert message.startswith("Glance image %s on the source cloud arrived "
                              "damaged: its sha512 is " % IMAGE)
    assert "\n" not in message
    # The last chunk was never sent: Glance got less than the image.
    assert len(glances.received) < len(data)
    assert glances.status == "queued" and glances.deleted == [COPY]


def test_web_download_when_offered_and_the_source_has_a_url():
    data = _data(2 * streams.CHUNK)
    glances = Glances(MOCK, data, methods=["glance-direct", "web-download"],
                      direct_url="https://images.example/x.raw")
    image = _copy()
    assert image.id == COPY
    assert glances.imports == ["web-download"] and glances.downloads == []


def test_no_web_download_without_a_url_the_destination_may_fetch():
    data = _data(2 * streams.CHUNK)
    glances = Glances(MOCK, data, methods=["web-download"],
                      direct_url="file:///var/lib/glance/images/x")
    _copy()
    assert glances.imports == [] and glances.downloads == [0]
    assert glances.received == data


def _calls(host):
    return [(r.method, r.path) for r in MOCK.request_history
            if r.netloc == host]


def test_a_plain_upload_asks_glance_nothing_more():
    """No import discovery unless the upload is refused; the finished
    image is the one glanceclient's update read after its PATCH."""
    Glances(MOCK, _data(2 * streams.CHUNK))
    _copy()
    calls = _calls("dest.test")
    assert ("GET", "/v2/info/import") not in calls
    assert calls[-2:] == [("PATCH", "/v2/images/" + COPY),
                          ("GET", "/v2/images/" + COPY)]


def test_a_refused_upload_is_staged_and_imported_when_offered():
    data = _data(2 * streams.CHUNK)
    glances = Glances(MOCK, data, methods=["glance-direct"])
    MOCK.put(DEST + "/v2/images/%s/file" % COPY, status_code=403)
    staged = []
    MOCK.put(DEST + "/v2/images/%s/stage" % COPY, status_code=204,
             text=lambda request, context: staged.append(
                 b"".join(request.body)) or "")
    assert _copy().id == COPY
    assert staged == [data] and glances.imports == ["glance-direct"]
    assert ("GET", "/v2/info/import") in _calls("dest.test")

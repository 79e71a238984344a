"""Image data to and from Glance: hashing beside the transfer, and a
damaged download caught, with the real glanceclient over requests-mock."""
import hashlib
import os

import pytest
import requests_mock
from keystoneauth1 import session

from novaimagebuilder import errors
from novaimagebuilder import glance

URL = "http://glance.test"
IMAGE = "0b3b6a5e-2b43-4d5e-9a1f-7d3c1c0e9a11"


def _client():
    return glance.client(session.Session(), endpoint=URL)


#: The part of Glance's image schema that glanceclient reads.
SCHEMA = {"name": "image", "links": [], "additionalProperties":
          {"type": "string"}, "properties": {
              "id": {"type": "string"}, "status": {"type": "string"},
              "size": {"type": ["null", "integer"]},
              "os_hash_algo": {"type": ["null", "string"]},
              "os_hash_value": {"type": ["null", "string"]}}}


def _mock(mocker, data, digest):
    mocker.get(URL + "/v2/schemas/image", json=SCHEMA)
    mocker.get(URL + "/v2/images/" + IMAGE, json={
        "id": IMAGE, "status": "active", "size": len(data),
        "os_hash_algo": "sha512", "os_hash_value": digest})
    mocker.get(URL + "/v2/images/%s/file" % IMAGE, content=data,
               headers={"Content-Type": "application/octet-stream",
                        "Content-Length": str(len(data))})


def test_stream_hash_matches_hashlib_whatever_the_chunks():
    data = os.urandom(5 * glance.CHUNK + 17)
    digest = glance.StreamHash("sha512", depth=2)
    for start in range(0, len(data), 65536):
        digest.update(data[start:start + 65536])
    assert digest.hexdigest() == hashlib.sha512(data).hexdigest()
    assert digest.hexdigest() == hashlib.sha512(data).hexdigest()


def test_download_checks_the_hash(tmp_path):
    data = os.urandom(3 * glance.CHUNK + 5)
    path = tmp_path / "image"
    seen = []
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        glance.download(_client(), IMAGE, str(path),
                        progress=lambda p, n: seen.append(p))
    assert path.read_bytes() == data
    assert seen[-1] == 100


def test_download_progress_is_reported_once_a_percent(tmp_path):
    data = bytes(120 * glance.CHUNK + 3)  # more chunks than percents
    seen = []
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        glance.download(_client(), IMAGE, str(tmp_path / "image"),
                        progress=lambda p, n: seen.append(p))
    assert seen == sorted(set(seen)) and seen[-1] == 100
    assert len(seen) <= 101


def test_damaged_download_is_an_error_and_leaves_no_file(tmp_path):
    data = os.urandom(glance.CHUNK + 5)
    path = tmp_path / "image"
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(b"other bytes").hexdigest())
        with pytest.raises(errors.BuildError,
                           match="Glance image %s arrived damaged: its "
                           "sha512 is " % IMAGE):
            glance.download(_client(), IMAGE, str(path))
    assert not path.exists()

"""Image data to and from Glance: hashing beside the transfer, a damaged
download caught and a download that is not the disk_format Glance says
refused, with the real glanceclient over requests-mock."""
import hashlib
import os
import subprocess
import time

import pytest
import requests_mock
from keystoneauth1 import session

from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder.images import download
from novaimagebuilder.images import streams

URL = "http://glance.test"
IMAGE = "0b3b6a5e-2b43-4d5e-9a1f-7d3c1c0e9a11"


def _client():
    return glance.client(session.Session(), endpoint=URL)


#: The part of Glance's image schema that glanceclient reads.
SCHEMA = {"name": "image", "links": [], "additionalProperties":
          {"type": "string"}, "properties": {
              "id": {"type": "string"}, "status": {"type": "string"},
              "size": {"type": ["null", "integer"]},
              "disk_format": {"type": ["null", "string"]},
              "container_format": {"type": ["null", "string"]},
              "os_hash_algo": {"type": ["null", "string"]},
              "os_hash_value": {"type": ["null", "string"]}}}


def _mock(mocker, data, digest, disk_format="raw"):
    mocker.get(URL + "/v2/schemas/image", json=SCHEMA)
    mocker.get(URL + "/v2/images/" + IMAGE, json={
        "id": IMAGE, "status": "active", "size": len(data),
        "disk_format": disk_format, "container_format": "bare",
        "os_hash_algo": "sha512", "os_hash_value": digest})
    mocker.get(URL + "/v2/images/%s/file" % IMAGE, content=data,
               headers={"Content-Type": "application/octet-stream",
                        "Content-Length": str(len(data))})


def test_stream_hash_matches_hashlib_whatever_the_chunks():
    data = os.urandom(5 * streams.CHUNK + 17)
    digest = streams.StreamHash("sha512", depth=2)
    for start in range(0, len(data), 65536):
        digest.update(data[start:start + 65536])
    assert digest.hexdigest() == hashlib.sha512(data).hexdigest()
    assert digest.hexdigest() == hashlib.sha512(data).hexdigest()


def _random(size):
    """``size`` random bytes after a zeroed first sector (so that no format
    inspector takes them for a disk header)."""
    return bytes(512) + os.urandom(size - 512)


def test_download_checks_the_hash(tmp_path):
    data = _random(3 * streams.CHUNK + 5)
    path = tmp_path / "image"
    seen = []
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        download.download(_client(), IMAGE, str(path),
                          progress=lambda p, n: seen.append(p))
    assert path.read_bytes() == data
    assert seen[-1] == 100


def test_progress_ends_at_100_when_the_record_comes_after_the_bytes(
        tmp_path):
    data = _random(3 * streams.CHUNK + 5)
    record = {"id": IMAGE, "status": "active", "size": len(data),
              "disk_format": "raw", "container_format": "bare",
              "os_hash_algo": "sha512",
              "os_hash_value": hashlib.sha512(data).hexdigest()}

    def slow_record(request, context):
        time.sleep(0.5)
        return record
    seen = []
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, None)
        mocker.get(URL + "/v2/images/" + IMAGE, json=slow_record)
        download.download(_client(), IMAGE, str(tmp_path / "image"),
                          progress=lambda p, n: seen.append(p))
    assert seen == [100]


def test_download_progress_is_reported_once_a_percent(tmp_path):
    data = bytes(120 * streams.CHUNK + 3)  # more chunks than percents
    seen = []
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        download.download(_client(), IMAGE, str(tmp_path / "image"),
                          progress=lambda p, n: seen.append(p))
    assert seen == sorted(set(seen)) and seen[-1] == 100
    assert len(seen) <= 101


def test_damaged_download_is_an_error_and_leaves_no_file(tmp_path):
    data = _random(streams.CHUNK + 5)
    path = tmp_path / "image"
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(b"other bytes").hexdigest())
        with pytest.raises(errors.BuildError,
                           match="Glance image %s arrived damaged: its "
                           "sha512 is " % IMAGE):
            download.download(_client(), IMAGE, str(path))
    assert not path.exists()


def test_download_that_is_not_its_disk_format_is_refused(tmp_path):
    """A "raw" Glance image whose bytes are a qcow2 header naming a backing
    file on this host: refused in one line, no file left."""
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                    "/etc/hostname", "-F", "raw", str(evil), "1M"],
                   check=True)
    data = evil.read_bytes()
    path = tmp_path / "image"
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        with pytest.raises(errors.BuildError) as raised:
            download.download(_client(), IMAGE, str(path))
    assert str(raised.value) == ("Glance image %s claims raw but holds a "
                                 "qcow2 header with a backing file" % IMAGE)
    assert not path.exists()


def test_download_in_its_disk_format_is_accepted(tmp_path):
    good = tmp_path / "good.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(good),
                    "1M"], check=True)
    data = good.read_bytes()
    path = tmp_path / "image"
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest(), "qcow2")
        download.download(_client(), IMAGE, str(path))
    assert path.read_bytes() == data


def test_progress_is_reported_a_percent_at_most_once_a_second(monkeypatch):
    clock = iter([0.0, 0.5, 0.9, 1.2, 1.3, 1.4])
    monkeypatch.setattr(streams.time, "monotonic", lambda: next(clock))
    seen = []
    report = streams.Progress(lambda percent, done: seen.append(percent), 100)
    for done in (1, 2, 2, 3, 99, 100):
        report(done)
    report.close()
    # 2 % came too soon, 3 % a second after 1 %, 99 % too soon again; the
    # end always, and last (a report its thread had not made by then is
    # dropped: it would be older).
    assert seen[-1] == 100 and seen == sorted(set(seen))
    assert set(seen) <= {1, 3, 100}


def test_the_bytes_do_not_wait_for_a_slow_report():
    """A report (a database write) is made by the reporter's thread; the
    last one before the transfer returns."""
    seen, started = [], time.monotonic()
    report = streams.Progress(lambda percent, done: (
        time.sleep(1), seen.append(percent)), 100)
    report.INTERVAL = 0
    for done in range(1, 100):
        report(done)
    assert time.monotonic() - started < 1
    report(100)
    report.close()
    assert seen[-1] == 100 and seen == sorted(set(seen))


def test_a_download_reads_the_image_record_and_its_bytes_only(tmp_path):
    """Two requests to Glance (glanceclient would read its image schema
    first): the bytes, and once they come the record beside them (asked at
    once, both would have Glance validate a new token)."""
    data = _random(2 * streams.CHUNK)
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, hashlib.sha512(data).hexdigest())
        image = download.download(_client(), IMAGE, str(tmp_path / "image"))
        assert [r.path for r in mocker.request_history] == [
            "/v2/images/%s/file" % IMAGE, "/v2/images/" + IMAGE]
    assert image["disk_format"] == "raw"


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_a_download_is_checked_in_the_images_own_algorithm(tmp_path,
                                                           algorithm):
    """Hashed in Glance's default (sha512) as it comes; an image hashed
    otherwise (a Glance configured so, or an old image's MD5 checksum) is
    checked in its own algorithm."""
    data = _random(2 * streams.CHUNK + 3)
    path = tmp_path / "image"
    with requests_mock.Mocker() as mocker:
        _mock(mocker, data, None)
        record = {"id": IMAGE, "status": "active", "size": len(data),
                  "disk_format": "raw", "container_format": "bare"}
        if algorithm == "md5":
            record["checksum"] = hashlib.md5(b"other").hexdigest()
        else:
            record.update(os_hash_algo=algorithm,
                          os_hash_value=hashlib.sha256(b"x").hexdigest())
        mocker.get(URL + "/v2/images/" + IMAGE, json=record)
        with pytest.raises(errors.BuildError, match="arrived damaged: its "
                           "%s is " % algorithm):
            download.download(_client(), IMAGE, str(path))
        assert not path.exists()
        good = hashlib.new(algorithm, data).hexdigest()
        record["checksum" if algorithm == "md5" else "os_hash_value"] = good
        mocker.get(URL + "/v2/images/" + IMAGE, json=record)
        download.download(_client(), IMAGE, str(path))
    assert path.read_bytes() == data


def test_a_download_of_no_image_says_so(tmp_path):
    with requests_mock.Mocker() as mocker:
        mocker.get(URL + "/v2/images/" + IMAGE, status_code=404,
                   text="No image found with ID %s" % IMAGE)
        mocker.get(URL + "/v2/images/%s/file" % IMAGE, status_code=404,
                   text="No image found with ID %s" % IMAGE)
        with pytest.raises(errors.BuildError, match="^reading Glance image "
                           "%s: .*HTTP 404" % IMAGE):
            download.download(_client(), IMAGE, str(tmp_path / "image"))
    assert not (tmp_path / "image").exists()

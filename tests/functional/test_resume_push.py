"""A push to the test cloud's Glance whose CLI is killed with kill -9 in the
middle of its upload goes on with ``imgfac-nova resume ID``: the image the
dead process made is taken up (Glance put it back to queued when the
upload was cut, and it is filled again), never a second one; a push given
a provider definition needs its credentials file again (one line, exit 2,
nothing changed without it), and they are stored nowhere.

The target image pushed is a small qcow2 file with a COMPLETE target record
of its own (no build: the push is what is tested).
"""
import hashlib
import os
import signal
import socket
import subprocess

import pytest
import yaml

from imgfac_nova import images
from novaimagebuilder import cloud
from tests import poll
from tests.functional import builds
from tests.functional import databases

KEYSTONE = "http://127.0.0.1:5000/v3"
CREDENTIALS = """<provider_credentials><openstack_credentials>
<username>{username}</username><password>{password}</password>
<tenant>{project_name}</tenant><auth_url>{auth_url}</auth_url>
</openstack_credentials></provider_credentials>
"""


@pytest.fixture
def target(setup):
    """A COMPLETE qcow2 target image of 8 MiB of random bytes; returns
    (config, store, tmp, its record)."""
    config, store, tmp = setup
    raw, disk = tmp / "disk.raw", tmp / "disk.qcow2"
    raw.write_bytes(os.urandom(8 * 2 ** 20))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                    str(raw), str(disk)], check=True)
    record = databases.image_store(store).add(images.ImageRecord(
        type=images.TARGET_IMAGE, status=images.COMPLETE, plugin="formats",
        target="qcow2", data=str(disk), percent_complete=100,
        properties={"disk_format": "qcow2", "container_format": "bare"}))
    return config, store, tmp, record


def _tagged(conn, push_id):
    return [image for image in conn.image.images()
            if (image.properties or {}).get(cloud.BUILD_TAG) == push_id]


def _credentials(test_cloud, path):
    """The credentials XML of the test cloud's imgfac user, in ``path``;
    returns its password."""
    with open(test_cloud.clouds_yaml) as handle:
        auth = yaml.safe_load(handle)["clouds"]["imgfac-test"]["auth"]
    path.write_text(CREDENTIALS.format(**auth))
    return auth["password"]


@pytest.mark.parametrize("provider", ["@imgfac-test", "definition"])
def test_a_push_killed_mid_upload_resumes_with_its_image(
        provider, target, cloud_env, test_cloud, conn, admin_conn):
    config, store, tmp, record = target
    credentials, secret = "-", None
    if provider == "definition":
        provider = '{"auth_url": "%s"}' % KEYSTONE
        credentials = str(tmp / "credentials.xml")
        secret = _credentials(test_cloud, tmp / "credentials.xml")
    env = cloud_env
    mark = str(tmp / "fault-mark")
    before = set(builds.records(store))
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(
            config, "provider_image", "qcow2", provider, credentials, "--id",
            record.identifier, env=dict(
                env, IMGFAC_TEST_FAULT="pause:Uploading to ",
                IMGFAC_TEST_FAULT_MARK=mark),
            module="tests.functional.faults", stderr=log)
        try:
            def uploading():
                assert proc.poll() is None, open(tmp / "build.log").read()
                return os.path.exists(mark)
            poll.wait_for(uploading, 120, "the upload to start", 0.2)
            [push_id] = set(builds.records(store)) - before
            [made] = _tagged(conn, push_id)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
    assert builds.read_record(store, push_id)["status"] == "BUILDING"

    if secret:  # the credentials are needed again, and named
        resumed = builds.imgfac(config, "resume", push_id, env=env)
        assert resumed.returncode == 2
        assert resumed.stderr.strip().splitlines() == [
            "imgfac-nova: error: image %s pushes to a provider whose "
            "credentials are never stored: give them again with "
            "--credentials FILE" % push_id]
        assert builds.read_record(store, push_id)["status"] == "BUILDING"
        args = ("--credentials", credentials)
    else:
        args = ()
    resumed = builds.imgfac(config, "resume", push_id, *args, env=env,
                            timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = builds.record(resumed)
    assert done["status"] == "COMPLETE", done["status_detail"]
    # The image the killed process made, filled again: the only one.
    assert done["identifier_on_provider"] == made.id
    records = databases.image_store(store)
    log = records.read_log(push_id)
    assert "Taking up Glance image %s (%s, queued)" % (
        made.name, made.id) in log
    [image] = _tagged(conn, push_id)
    assert (image.id, image.status) == (made.id, "active")
    with open(record.data, "rb") as handle:
        assert image.hash_value == hashlib.sha512(handle.read()).hexdigest()
    assert image.properties[cloud.OWNER_TAG] == "%s:%d" % (
        socket.gethostname(), resumed.pid)
    if secret:
        assert secret not in builds.record_text(store, push_id) + log + \
            open(records.log_path(push_id)).read()
    deleted = builds.imgfac(config, "delete", push_id,
                            *(("--credentials", credentials) if secret
                              else ()), env=env)
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert builds.cloud_left(admin_conn, push_id) == []

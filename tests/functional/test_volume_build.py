"""Base-image builds on Cinder volumes in the test cloud, as its non-admin
user with the zero-disk flavor `bfv` (so on volumes without being asked):
a URL install reaches COMPLETE, its result and JEOS cache entry are real
images (bytes, a checksum, no block_device_mapping), and nothing tagged
with the build is left. What Nova itself does with a zero-disk flavor and a
volume-backed server (the reason for all this) is recorded in
test_cloud_volumes.py."""
import signal

import pytest

from tests.functional import builds

from novaimagebuilder import cloud

VOLUME_PARAMS = ("--parameter", "flavor", "bfv",
                 "--parameter", "network", "imgfac-net",
                 "--parameter", "default_user", "debian",
                 "--parameter", "command_prefix", "sudo",
                 "--parameter", "disk_size", "2")


def cloud_left(admin_conn, build_id):
    """builds.cloud_left plus the build's volumes and volume snapshots in
    every project."""
    left = builds.cloud_left(admin_conn, build_id)
    volumes = {v.id: v.name for v in admin_conn.block_storage.volumes(
        all_projects=True)
        if (v.metadata or {}).get(cloud.BUILD_TAG) == build_id}
    left += [("volume", name) for name in volumes.values()]
    left += [("volume snapshot", s.id) for s in admin_conn.block_storage.
             snapshots(all_projects=True) if s.volume_id in volumes or
             (s.metadata or {}).get(cloud.BUILD_TAG) == build_id]
    return left


@pytest.fixture(scope="module")
def volume_build(tmp_path_factory, cloud_env, test_cloud):
    """One URL install on volumes: (record, config); deleted at the end."""
    tmp = tmp_path_factory.mktemp("volume-build")
    config, _ = builds.write_config(tmp)
    result = builds.imgfac(
        config, "base_image", *builds.with_install_script(VOLUME_PARAMS, tmp),
        builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    yield image, config
    conn = test_cloud.connect(test_cloud.cloud)
    try:
        builds.delete(config, image, cloud_env, conn)
    finally:
        conn.close()


@pytest.mark.slow  # about 7 min: the install and two uploads on TCG
def test_url_install_on_volumes_is_an_image_with_its_bytes(
        volume_build, conn, admin_conn):
    image, _ = volume_build
    assert image["status"] == "COMPLETE"
    glance = conn.image.get_image(
        image["properties"]["x-image-properties-glance_id"])
    assert glance.status == "active"
    assert glance.size > 0 and glance.checksum
    assert glance.disk_format == "qcow2"
    props = glance.properties or {}
    assert "block_device_mapping" not in props and "bdm_v2" not in props
    assert props["imgfac_build_id"] == image["identifier"]
    assert props.get("imgfac_role") == "image"
    assert not {"kernel_id", "ramdisk_id", "os_command_line",
                "imgfac_owner", "imgfac_jeos_key"} & set(props)
    assert '<package name="hello_' in image["icicle"].replace("'", '"')
    if image["properties"]["jeos_cache"] == "stored":
        entry = conn.image.get_image(image["properties"]["jeos_image"])
        assert entry.status == "active" and entry.size > 0
        assert "block_device_mapping" not in (entry.properties or {})
        assert not {"kernel_id", "ramdisk_id"} & set(entry.properties or {})
    # Nothing of the build but its result (and JEOS cache entry).
    assert cloud_left(admin_conn, image["identifier"]) == [
        ("image", glance.name)]
    print("volume build: %s" % image["timings"])


@pytest.mark.parametrize("extra,error", [
    (("--parameter", "volume_type", "nope"),
     "Cinder has no volume type 'nope' (types: "),
    (("--parameter", "volume_size", "5000"), "the project's quota is too "
     "small for this build: Cinder volume gigabytes: "),
    (("--parameter", "flavor", "2", "--parameter", "disk_size", "6"),
     "disk_size 6 GiB does not fit flavor 2, whose root disk is 4 GiB"),
])
def test_volumes_or_disks_the_cloud_cannot_have_are_one_line(
        cloud_env, setup, conn, extra, error):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *builds.with_install_script(
        VOLUME_PARAMS, tmp), *extra, builds.write_template(tmp),
        env=cloud_env)
    assert result.returncode == 2
    assert error in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert builds.store_is_empty(store)
    assert builds.made_by(conn, result) == []


def _interrupted_while_installing(config, store, tmp, env, conn, signum):
    """Start a fresh build on volumes and send it ``signum`` once it waits
    for its installer (which boots from the build's volume); returns the
    build's id."""
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", *builds.with_install_script(
            VOLUME_PARAMS, tmp), *builds.FRESH_INSTALL,
            builds.write_template(tmp), env=env, stderr=log)
        try:
            record = builds.wait_for_record(
                proc, store, lambda r: r["status"] == "BUILDING" and
                r["status_detail"]["activity"].startswith("Installing"),
                interval=0.2)
            mine = [v for v in conn.block_storage.volumes()
                    if (v.metadata or {}).get(cloud.BUILD_TAG) ==
                    record["identifier"]]
            assert [v.status for v in mine] == ["in-use"], mine
        finally:
            proc.send_signal(signum)
            proc.communicate(timeout=600)
    return record["identifier"]


def test_interrupted_builds_on_volumes_leave_no_volume(
        cloud_env, setup, conn, admin_conn):
    """Ctrl-C or SIGTERM during the install removes the volume with the
    rest; kill -9, then 'resume --abandon', too."""
    config, store, tmp = setup
    for signum in (signal.SIGINT, signal.SIGTERM):
        stopped = _interrupted_while_installing(config, store, tmp,
                                                cloud_env, conn, signum)
        assert builds.read_record(store, stopped)["status"] == "FAILED"
        assert cloud_left(admin_conn, stopped) == []

    killed = _interrupted_while_installing(config, store, tmp, cloud_env,
                                           conn, signal.SIGKILL)
    assert ("volume", "imgfac-nova-%s-installer-volume" % killed) in \
        cloud_left(admin_conn, killed)
    abandoned = builds.imgfac(config, "resume", "--abandon", killed,
                              env=cloud_env)
    assert abandoned.returncode == 0, abandoned.stderr[-3000:]
    assert cloud_left(admin_conn, killed) == []


def test_sweep_removes_a_builds_volume_and_its_snapshot(conn, admin_conn):
    """A snapshot keeps its volume from being deleted: the sweep removes
    the snapshots of a build's volumes first, then the volumes."""
    import uuid

    from novaimagebuilder.machines import nova_sweep
    build_id = str(uuid.uuid4())
    volume = conn.block_storage.create_volume(
        name="imgfac-nova-%s-installer-volume" % build_id, size=1,
        metadata={cloud.BUILD_TAG: build_id})
    conn.block_storage.wait_for_status(volume, "available",
                                       failures=["error"], wait=120)
    snapshot = conn.block_storage.create_snapshot(
        volume_id=volume.id, name="snapshot for imgfac-nova-%s" % build_id)
    conn.block_storage.wait_for_status(snapshot, "available",
                                       failures=["error"], wait=120)
    assert ("volume snapshot", snapshot.id) in [
        (f.kind, f.id) for f in nova_sweep.leftovers(conn) if f.build == build_id]

    outcomes = nova_sweep.sweep_cloud(
        conn, lambda found: None if found.build == build_id else "not ours")

    assert [(o.leftover.kind, o.error) for o in outcomes] == [
        ("volume snapshot", None), ("volume", None)]
    assert cloud_left(admin_conn, build_id) == []


@pytest.mark.slow  # a whole ISO install under TCG (~7 min)
def test_iso_install_on_volumes_rescues_the_volume_backed_installer(
        cloud_env, setup, conn, admin_conn):
    """The installer boots from its volume and is rescued with the ISO
    (both rescue properties, compute API 2.87); its capture uploads the
    volume."""
    import os

    from tests.functional.test_iso_installs import ISO_URL
    config, store, tmp = setup
    template = builds.write_template(tmp)
    with open(template) as handle:
        text = handle.read().replace(
            "<install type='url'><url>%s</url></install>" % builds.INSTALL_URL,
            "<install type='iso'><iso>%s</iso></install>" % ISO_URL)
    with open(template, "w") as handle:
        handle.write(text)
    result = builds.imgfac(config, "base_image", *builds.with_install_script(
        VOLUME_PARAMS, tmp), *builds.FRESH_INSTALL, template, env=cloud_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    try:
        assert image["status"] == "COMPLETE"
        with open(os.path.join(store, image["identifier"] + ".log")) as log:
            text = log.read()
        assert "Rescuing server imgfac-nova-%s-installer" \
            % image["identifier"] in text
        assert "to upload its volume" in text
        glance = conn.image.get_image(
            image["properties"]["x-image-properties-glance_id"])
        assert glance.status == "active" and glance.size > 0
        assert "block_device_mapping" not in (glance.properties or {})
        assert cloud_left(admin_conn, image["identifier"]) == [
            ("image", glance.name)]
    finally:
        builds.delete(config, image, cloud_env, conn)

"""The same template built image-backed and volume-backed in the test cloud
(flavor 2, the second with boot_from_volume true): the same ICICLE, the
same record properties and the same Glance image but for what Nova's
snapshot notes of the server it was taken from. And the openstack target of
the volume-backed base, made in the cloud: its guest boots from a volume
made from the base's image, is customized there, and its result is that
volume uploaded to Glance; nothing tagged is left."""
import os

import pytest
from lxml import etree

from tests.functional import builds
from tests.functional import test_cloud_plugins
from tests.functional.test_volume_build import cloud_left

ON_VOLUMES = ("--parameter", "boot_from_volume", "true")

#: What a Nova snapshot of a server records of that server and its user
#: (the image-backed build's result; a volume upload has no server).
NOVA_SNAPSHOT_ONLY = {"instance_uuid", "base_image_ref", "image_type",
                      "user_id", "owner_user_name", "owner_project_name",
                      "boot_roles"}
#: What differs between any two images.
PER_IMAGE = {"id", "name", "checksum", "hash_value", "size", "created_at",
             "updated_at", "file", "imgfac_build_id", "imgfac_icicle",
             "imgfac_template", "location", "image_build_date"}
#: What differs between any two builds' records.
PER_BUILD = {"glance_image_id", "x-image-properties-glance_id",
             "jeos_image", "ssh_address", "ssh_host_key_fingerprint"}

#: Target content for the in-cloud target: a package from the test cloud's
#: repository (its ICICLE shows it was installed in the guest) and a file.
TARGET_CONTENT = """<template_includes>
  <include target="openstack">
    <repositories>
      <repository name="test-cloud-local">
        <url>%s</url><signed>no</signed><persisted>no</persisted>
      </repository>
    </repositories>
    <packages><package name="figlet"/></packages>
    <files><file name="/etc/imgfac-openstack">on a volume</file></files>
  </include>
</template_includes>
""" % builds.GUEST_REPO_URL


def _glance(conn, record):
    image = conn.image.get_image(
        record["properties"]["x-image-properties-glance_id"])
    found = image.to_dict()
    found.update(found.pop("properties") or {})
    return image, {k: v for k, v in found.items() if v not in (None, "")}


def _packages(record):
    return {p.get("name").split("_")[0] for p in etree.fromstring(
        record["icicle"].encode()).iter("package")}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, cloud_env, test_cloud):
    """One template built image-backed, then volume-backed, each a fresh
    install: ``({"image": record, "volume": record}, tmp)``; deleted at
    the end."""
    tmp = tmp_path_factory.mktemp("volume-parity")
    config, _ = builds.write_config(tmp)
    template = builds.write_template(tmp)
    made = {}
    try:
        for kind, extra in (("image", ()), ("volume", ON_VOLUMES)):
            result = builds.imgfac(
                config, "base_image", *builds.with_install_script(
                    builds.NOVA_PARAMS + extra, tmp), template, env=cloud_env)
            assert result.returncode == 0, result.stderr[-3000:]
            made[kind] = builds.record(result)
            print("%s-backed build: %s" % (kind, made[kind]["timings"]))
        yield made, config, tmp
    finally:
        conn = test_cloud.connect(test_cloud.cloud)
        try:
            for record in made.values():
                builds.delete(config, record, cloud_env, conn)
        finally:
            conn.close()


@pytest.mark.slow  # two installs and customizations under TCG (~15 min)
def test_image_and_volume_backed_builds_agree(pair, conn):
    made, _, _ = pair
    image, volume = made["image"], made["volume"]
    assert image["status"] == volume["status"] == "COMPLETE"
    assert "hello" in _packages(image)
    assert volume["icicle"] == image["icicle"]
    assert volume["parameters"].pop("boot_from_volume") is True
    assert volume["parameters"] == image["parameters"]
    assert set(volume["properties"]) == set(image["properties"])
    assert {k: v for k, v in volume["properties"].items()
            if k not in PER_BUILD} == {
        k: v for k, v in image["properties"].items() if k not in PER_BUILD}

    from_image, by_image = _glance(conn, image)
    from_volume, by_volume = _glance(conn, volume)
    assert by_volume["status"] == "active" and from_volume.size > 0
    assert not NOVA_SNAPSHOT_ONLY & set(by_volume)
    assert {"block_device_mapping", "bdm_v2"}.isdisjoint(by_volume)
    # Nova's snapshot: min_disk the flavor's root disk (4 GiB); the volume
    # is as large.
    assert by_image["min_disk"] == by_volume["min_disk"] == 4
    assert by_image["virtual_size"] == by_volume["virtual_size"]
    assert {k: v for k, v in by_volume.items() if k not in PER_IMAGE} == {
        k: v for k, v in by_image.items()
        if k not in PER_IMAGE | NOVA_SNAPSHOT_ONLY}


@pytest.mark.slow  # a customization boot of the base under TCG (~5 min)
def test_in_cloud_target_of_a_volume_backed_base_is_its_volume_uploaded(
        pair, cloud_env, conn, admin_conn):
    made, _, tmp = pair
    base = made["volume"]
    config, _ = test_cloud_plugins._content_config(
        (None, os.path.join(str(tmp), "store"), tmp), TARGET_CONTENT)
    result = builds.imgfac(config, "target_image", "--id",
                           base["identifier"], "openstack", env=cloud_env)
    assert result.returncode == 0, result.stderr[-3000:]
    target = builds.record(result)
    print("in-cloud target of the volume-backed base: %s" % target["timings"])
    try:
        assert target["status"] == "COMPLETE"
        assert target["properties"]["in_cloud"] is True
        with open(target["log"]) as log:
            text = log.read()
        assert "Making volume imgfac-nova-%s-guest-volume" \
            % target["identifier"] in text
        assert "to upload its volume" in text
        assert {"figlet", "hello"} <= _packages(target)
        glance, found = _glance(conn, target)
        assert glance.status == "active" and glance.size > 0
        assert {"block_device_mapping", "bdm_v2"}.isdisjoint(found)
        assert found["imgfac_base_image"] == base["identifier"]
        assert found["min_disk"] == target["properties"]["min_disk"] == 4
        assert cloud_left(admin_conn, target["identifier"]) == [
            ("image", glance.name)]
        assert cloud_left(admin_conn, base["identifier"]) == [
            ("image", _glance(conn, base)[0].name)]
    finally:
        deleted = builds.imgfac(config, "delete", target["identifier"],
                                env=cloud_env)
        assert deleted.returncode == 0, deleted.stderr
    assert cloud_left(admin_conn, target["identifier"]) == []

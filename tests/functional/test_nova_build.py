"""Base-image builds inside the test cloud: the Nova plugin end to end, and
its clean-up on every failure path, checked by listing the cloud."""
import json
import signal

import pytest

from tests import scs_0102
from tests.functional import builds
from tests.functional import guestcheck
from tests.functional import test_local_machine


@pytest.fixture
def params(tmp_path):
    return builds.with_install_script(builds.NOVA_PARAMS, tmp_path)


def build_resources(conn, build_id):
    """Everything in the cloud tagged with ``build_id`` (result included)."""
    from novaimagebuilder.machines import nova_sweep
    from novaimagebuilder import sweep
    names = {sweep.RESULT: "result image",
             sweep.JEOS_CACHE: "JEOS cache entry"}
    return [(names.get(found.role, found.kind), found.name)
            for found in nova_sweep.leftovers(conn) if found.build == build_id]


def _assert_cloud_clean(conn, build_id):
    """Nothing of the build is left but, when it installed, its JEOS in the
    JEOS cache."""
    assert [kind for kind, _ in build_resources(conn, build_id)
            if kind != "JEOS cache entry"] == []


def test_nova_build_end_to_end(nova_base_image, conn):
    image = nova_base_image.record
    assert image["status"] == "COMPLETE" and image["plugin"] == "nova"
    glance_id = image["properties"]["x-image-properties-glance_id"]
    glance = conn.image.get_image(glance_id)
    assert glance.status == "active"
    assert glance.properties["imgfac_build_id"] == image["identifier"]
    assert glance.os_distro == "debian"
    assert glance.properties["imgfac_icicle"] == image["identifier"]
    assert glance.min_ram == conn.compute.find_flavor("2").ram
    assert scs_0102.glance_offences(glance) == []
    assert glance.properties["image_original_user"] == "debian"
    assert "hw_firmware_type" not in glance.properties  # a BIOS build
    assert '<package name="hello_' in image["icicle"].replace("'", '"')
    assert builds.ROOT_PASSWORD not in builds.record_text(
        nova_base_image.store, image["identifier"])
    # Only the result (and cached install media and JEOS) remain.
    assert sorted(build_resources(conn, image["identifier"])) == sorted(
        [("result image", glance.name)] + (
            [("JEOS cache entry", conn.image.get_image(
                image["properties"]["jeos_image"]).name)]
            if image["properties"]["jeos_cache"] == "stored" else []))
    print("nova build took %.0f s: %s"
          % (nova_base_image.seconds, image["timings"]))

    # The image boots and shows the customization.
    with guestcheck.booted_in_cloud(conn, glance_id) as guest:
        assert guest.run("cat /etc/imgfac-ft.txt")[1].strip() == \
            "made by imgfac-nova"
        assert guest.run("cat /var/lib/imgfac-ft-mark")[1].strip() == \
            "customized"
        assert guest.run("hello")[1].strip() == "Hello, world!"


@pytest.mark.slow  # an install and two boots under OVMF: minutes of TCG
def test_uefi_nova_build_boots_under_ovmf(params, cloud_env, setup, conn):
    """firmware uefi: the installer disk's properties make Nova boot the
    installer under UEFI, its snapshots keep them; the result boots with
    UEFI (a fresh NVRAM: from the removable path of its ESP)."""
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *params, "--parameter",
                           "firmware", "uefi", "--parameter", "jeos_cache",
                           "false", builds.write_template(tmp),
                           env=cloud_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    try:
        assert image["status"] == "COMPLETE", image["status_detail"]
        glance = conn.image.get_image(
            image["properties"]["x-image-properties-glance_id"])
        props = dict(glance.properties or {}, **{
            key: value for key, value in glance.to_dict().items()
            if value is not None and key != "properties"})
        assert (props["hw_firmware_type"], props["hw_machine_type"]) == (
            "uefi", "q35")
        assert "os_secure_boot" not in props
        assert scs_0102.glance_offences(glance) == []
        with guestcheck.booted_in_cloud(conn, glance.id) as guest:
            status, _ = guest.run("test -d /sys/firmware/efi", check=False)
            esp_type = guest.run("sfdisk --part-type /dev/vda 1")[1]
        assert status == 0, "the guest did not boot with UEFI"
        assert esp_type.strip().upper() == test_local_machine.ESP_TYPE
        assert [kind for kind, _ in build_resources(
            conn, image["identifier"])] == ["result image"]
    finally:
        builds.delete(config, image, cloud_env, conn)


@pytest.mark.parametrize("extra,error", [
    (("--parameter", "flavor", "nope"), "Nova has no flavor 'nope'"),
    (("--parameter", "network", "nope"), "Neutron has no network 'nope'"),
])
def test_bad_cloud_input_creates_nothing(params, cloud_env, setup, conn, extra,
                                         error):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *params, *extra,
                           builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 2
    assert error in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert builds.store_is_empty(store)
    assert builds.made_by(conn, result) == []


def test_bad_credentials_one_line(params, cloud_env, setup, tmp_path):
    config, _, tmp = setup
    clouds = tmp_path / "clouds.yaml"
    text = open(cloud_env["OS_CLIENT_CONFIG_FILE"]).read()
    import re
    clouds.write_text(re.sub(r"password: .*", "password: wrong", text))
    env = dict(cloud_env, OS_CLIENT_CONFIG_FILE=str(clouds))
    result = builds.imgfac(config, "base_image", *params,
                           builds.write_template(tmp), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "the cloud refused the credentials (HTTP 401)")
    assert "wrong" not in result.stderr


def test_failing_command_cleans_the_cloud(params, cloud_env, setup, conn):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *params,
                           builds.write_template(tmp,
                                                 command="echo no; exit 4"),
                           env=cloud_env)
    assert result.returncode == 1
    image = builds.record(result)
    assert image["status_detail"]["error"] == (
        "command 'mark' exited with status 4: no")
    _assert_cloud_clean(conn, image["identifier"])


def test_hung_installer_cleans_the_cloud(params, cloud_env, setup, conn):
    config, store, tmp = setup
    result = builds.hung_install(config, tmp, params, cloud_env)
    assert result.returncode == 1
    image = builds.record(result)
    assert image["status_detail"]["error"].startswith(
        builds.HUNG_INSTALL_ERROR)
    _assert_cloud_clean(conn, image["identifier"])


def test_ctrl_c_during_customization_cleans_the_cloud(params, cloud_env, setup, conn):
    config, store, tmp = setup
    template = builds.write_template(tmp, command="sleep 600")
    proc = builds.start(config, "base_image", *params,
                        "--parameter", "request_floating_ip", "true",
                        template, env=cloud_env)
    build_id = builds.wait_for_activity(proc, store, "Running command 'mark'")
    kinds = {kind for kind, _ in build_resources(conn, build_id)}
    assert {"server", "keypair", "security group", "floating IP"} <= kinds
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    assert json.loads(out)["status_detail"]["error"] == (
        "interrupted at 70 %: Running command 'mark'")
    _assert_cloud_clean(conn, build_id)


def test_install_iso_that_is_not_one_creates_nothing(params, cloud_env,
                                                     setup, conn):
    """Install media that is not what the template claims: one line, and
    nothing is made in the cloud."""
    config, store, tmp = setup
    template = builds.write_template(tmp)
    with open(template) as handle:
        text = handle.read().replace(
            "<install type='url'><url>%s</url></install>" % builds.INSTALL_URL,
            "<install type='iso'><iso>http://127.0.0.1:8090/repo/Packages"
            "</iso></install>")
    with open(template, "w") as handle:
        handle.write(text)
    result = builds.imgfac(config, "base_image", *params, template,
                           env=cloud_env)
    assert result.returncode == 1
    error = builds.record(result)["status_detail"]["error"]
    assert error == "the install ISO http://127.0.0.1:8090/repo/Packages " \
        "is not an ISO 9660 image"
    assert builds.made_by(conn, result) == []
    _assert_cloud_clean(conn, builds.record(result)["identifier"])

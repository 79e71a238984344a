"""ISO images and rescue in the test cloud, as Nova's libvirt driver does
them, and an ISO install by the product through a stable device rescue.

The guests are the test installer booted from its ISO; what they see is read
from their console (the installer lists the media it mounts and the disk it
picks) and from the QEMU command line of the server.
"""
import base64
import json
import os
import subprocess

import pytest

from novaimagebuilder import waiter
from tests import poll
from tests.functional import builds

ISO_URL = "http://127.0.0.1:8090/installer/installer.iso"


@pytest.fixture(scope="module")
def iso_image(test_cloud, conn):
    """The test installer ISO in Glance, marked for a CD-ROM rescue."""
    path = os.path.join(test_cloud.state_dir, "www", "installer",
                        "installer.iso")
    image = conn.image.create_image(
        "imgfac-ft-installer-iso", filename=path, disk_format="iso",
        container_format="bare", allow_duplicates=True, wait=True,
        timeout=600, hw_rescue_device="cdrom")
    yield image, path
    conn.image.delete_image(image.id, ignore_missing=True)


def qemu_devices(server_id):
    """(device, drive file) of each disk on the QEMU command line of the
    server, in order; the device keeps its options (bootindex, bus)."""
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode().split("\0")
        except (OSError, ValueError):
            continue
        if "-uuid" not in argv or server_id not in argv:
            continue
        files = {}
        devices = []
        for flag, value in zip(argv, argv[1:]):
            opts = dict(o.partition("=")[::2] for o in value.split(","))
            if flag == "-drive":
                files[opts["id"]] = opts["file"]
            elif flag == "-device" and "drive" in opts:
                devices.append((value, files[opts["drive"]]))
        return devices
    raise AssertionError("no QEMU process runs server %s" % server_id)


def boot(conn, cleanup, name, image_id, script):
    server = conn.compute.create_server(
        name=name, image_id=image_id, flavor_id="1", config_drive=True,
        networks="none",
        user_data=base64.b64encode(script.encode()).decode())
    cleanup.append(lambda: conn.compute.delete_server(server.id))
    return wait_state(conn, server.id, "active")


def wait_state(conn, server_id, vm_state, power_state=None):
    return waiter.wait_for(
        "waiting for the server to be %s" % vm_state,
        lambda: conn.compute.get_server(server_id),
        lambda s: s.vm_state == vm_state and s.task_state is None and
        power_state in (None, s.power_state), timeout=600,
        failed=lambda s: s.status == "ERROR" and str(s.fault))


def console_shows(conn, server_id, text, timeout=600):
    def shown():
        out = conn.compute.get_server_console_output(server_id)["output"]
        return out if text in out else None
    return poll.wait_for(shown, timeout, "the console to show %r" % text,
                         interval=3)


def test_iso_image_is_the_root_cdrom(conn, iso_image, cleanup, unique_name,
                                     tmp_path):
    image, iso_path = iso_image
    server = boot(conn, cleanup, unique_name, image.id, "poweroff\n")
    devices = qemu_devices(server.id)
    # The root device is the ISO (an overlay on the cached image) as a
    # CD-ROM and the first to boot; only the config drive is beside it: no
    # blank disk.
    assert [os.path.basename(f) for _, f in devices] == ["disk",
                                                         "disk.config"]
    assert devices[0][0].startswith("ide-cd,") and "bootindex=1" in \
        devices[0][0]
    info = subprocess.run(["qemu-img", "info", "-U", devices[0][1]],
                          capture_output=True, text=True, check=True).stdout
    assert "backing file: " in info and image.id in info
    out = console_shows(conn, server.id, "INSTALLATION FAILED")
    assert "media /dev/sr0 (label IMGFAC-INSTALL) at /media/sr0" in out
    assert "no target disk found" in out
    # A snapshot holds the root device: the ISO.
    snapshot = conn.compute.create_server_image(server.id, unique_name,
                                                wait=True, timeout=600)
    cleanup.append(lambda: conn.image.delete_image(snapshot.id))
    data = tmp_path / "snapshot"
    with open(data, "wb") as f:
        conn.image.download_image(snapshot, output=f)
    assert subprocess.run(["qemu-img", "compare", "-q", str(data), iso_path]
                          ).returncode == 0


@pytest.mark.slow  # a rescue boot; the slow product ISO install depends on it
def test_cdrom_rescue_keeps_the_disks_and_boots_the_cd(conn, iso_image,
                                                       cleanup, unique_name,
                                                       tmp_path):
    image, _ = iso_image
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank),
                    "1G"], check=True)
    disk = conn.image.create_image(unique_name, filename=str(blank),
                                   disk_format="qcow2",
                                   container_format="bare", wait=True,
                                   timeout=600)
    cleanup.append(lambda: conn.image.delete_image(disk.id))
    server = boot(conn, cleanup, unique_name, disk.id, "hang\n")
    before = qemu_devices(server.id)
    conn.compute.rescue_server(server.id, image=image.id)
    wait_state(conn, server.id, "rescued")
    rescued = qemu_devices(server.id)
    # The server's disks stay, the rescue CD-ROM comes last and boots.
    assert [f for _, f in rescued[:-1]] == [f for _, f in before]
    assert all("bootindex" not in d for d, _ in rescued[:-1])
    assert rescued[-1][0].startswith("ide-cd,") and \
        "bootindex=0" in rescued[-1][0]
    assert os.path.basename(rescued[-1][1]) == "disk.rescue"
    out = console_shows(conn, server.id, "hanging (requested by")
    assert "media /dev/sr0 (label IMGFAC-INSTALL) at /media/sr0" in out
    assert "install script: config drive user_data" in out
    conn.compute.unrescue_server(server.id)
    wait_state(conn, server.id, "active", power_state=1)
    assert qemu_devices(server.id) == before
    assert not os.path.exists(rescued[-1][1])


def installer_console(conn, build_id, text):
    """The console of the build's installer server once it shows ``text``."""
    for server in conn.compute.servers(
            name="imgfac-nova-%s-installer" % build_id):
        output = conn.compute.get_server_console_output(server)["output"]
        if text in output:
            return output
    return None


@pytest.mark.slow  # a whole install under TCG (~6 min), then a repeat
def test_product_iso_install_completes_and_a_repeat_reuses_it(cloud_env, setup,
                                                              conn):
    """The test installer ISO installs through a rescue, to COMPLETE; the
    same build again starts from the cached JEOS: no rescue, no installer."""
    import time
    from novaimagebuilder.machines import nova_sweep
    from novaimagebuilder import sweep
    config, store, tmp = setup
    template = builds.write_template(tmp)
    with open(template) as handle:
        text = handle.read().replace(
            "<install type='url'><url>%s</url></install>" % builds.INSTALL_URL,
            "<install type='iso'><iso>%s</iso></install>" % ISO_URL)
    with open(template, "w") as handle:
        handle.write(text)
    params = builds.with_install_script(builds.NOVA_PARAMS, tmp)
    made, seconds = [], []
    try:
        started = time.monotonic()
        proc = builds.start(config, "base_image", *params, template,
                            env=cloud_env)
        build_id = builds.wait_for_activity(proc, store, "Installing Debian")
        # The ISO's own menu never sees a build's kernel arguments: the
        # installer finds its script through inst.ks= only if the copy it
        # booted passed them on.
        console = poll.wait_for(
            lambda: installer_console(conn, build_id, "install script:"),
            600, "the installer to name its install script", interval=5)
        assert "install script: hd:LABEL=config-2:/openstack/latest/" \
            "user_data" in console
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, err[-3000:]
        made.append(json.loads(out))
        seconds.append(time.monotonic() - started)
        started = time.monotonic()
        result = builds.imgfac(config, "base_image", *params, template,
                               env=cloud_env)
        seconds.append(time.monotonic() - started)
        assert result.returncode == 0, result.stderr[-3000:]
        made.append(builds.record(result))
        first, repeat = made
        assert first["status"] == repeat["status"] == "COMPLETE"
        log = open(os.path.join(store, first["identifier"] + ".log")).read()
        assert "Rescuing server imgfac-nova-%s-installer" \
            % first["identifier"] in log
        # (the copy is shared media: made by the first such build, reused
        # by later ones of the same ISO and kernel arguments)
        assert "boots the installer at once with the build's kernel " \
            "arguments\n" in log or "Reusing Glance image" in log
        assert "Unrescuing server" in log
        assert first["properties"]["jeos_cache"] == "stored"
        assert repeat["properties"]["jeos_cache"] == "hit"
        assert repeat["properties"]["jeos_image"] == \
            first["properties"]["jeos_image"]
        log = open(os.path.join(store, repeat["identifier"] + ".log")).read()
        assert "Rescuing" not in log
        assert "Booting the Debian installer" not in log
        for image in made:
            assert [f.kind for f in nova_sweep.leftovers(conn)
                    if f.build == image["identifier"]
                    and f.role not in (sweep.RESULT, sweep.JEOS_CACHE)] == []
        print("ISO build: %.0f s %s; repeat from the JEOS cache: %.0f s %s; "
              "%.1fx faster" % (seconds[0], first["timings"], seconds[1],
                                repeat["timings"], seconds[0] / seconds[1]))
    finally:
        for image in made:
            builds.delete(config, image, cloud_env, conn)

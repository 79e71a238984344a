"""Local base-image builds with QEMU: the whole pipeline, and its clean-up on
every failure path. The test installer and package repository are the test
cloud's (served on 127.0.0.1:8090)."""
import json
import signal
import subprocess

import pytest

from tests.functional import builds
from tests.functional import guestcheck


@pytest.fixture
def params(tmp_path):
    return builds.with_install_script(builds.LOCAL_PARAMS, tmp_path)


def test_local_build_customizes_and_yields_a_bootable_qcow2(local_base_image):
    image = local_base_image.record
    store = local_base_image.store
    assert image["status"] == "COMPLETE"
    assert image["plugin"] == "local"
    assert image["properties"]["accelerator"] in ("kvm", "tcg")
    info = subprocess.run(["qemu-img", "info", "--output", "json",
                           image["data"]], capture_output=True, text=True)
    assert '"format": "qcow2"' in info.stdout
    assert '"backing-filename"' not in info.stdout  # standalone
    assert '<package name="hello_' in image["icicle"].replace("'", '"')
    assert "functional test image" in image["icicle"]
    installed = {"stored": {"install", "jeos"}, "hit": set()}[
        image["properties"]["jeos_cache"]]
    assert set(image["timings"]) == {"media", "customize", "capture"} | \
        installed
    assert builds.ROOT_PASSWORD not in builds.record_text(
        store, image["identifier"])
    assert builds.store_leftovers(store) == []
    assert builds.qemu_processes_under(store) == []
    print("local build took %.0f s (%s)" % (local_base_image.seconds,
                                            image["timings"]))

    with guestcheck.booted(image["data"]) as guest:
        assert guest.run("cat /etc/imgfac-ft.txt")[1].strip() == \
            "made by imgfac-nova"
        assert guest.run("cat /var/lib/imgfac-ft-mark")[1].strip() == \
            "customized"
        assert guest.run("hello")[1].strip() == "Hello, world!"
        # The repository was not persisted.
        status, _ = guest.run("ls /etc/apt/sources.list.d/ftrepo.list",
                              check=False)
        assert status != 0


def _assert_nothing_left(store):
    assert builds.store_leftovers(store) == []
    assert builds.qemu_processes_under(store) == []


def test_failing_command_fails_build_with_its_name(params, local_env, setup):
    config, store, tmp = setup
    template = builds.write_template(tmp, command="echo doomed; exit 3")
    result = builds.imgfac(config, "base_image", *params, template,
                           env=local_env)
    assert result.returncode == 1
    image = builds.record(result)
    assert image["status"] == "FAILED"
    assert image["status_detail"]["error"] == (
        "command 'mark' exited with status 3: doomed")
    _assert_nothing_left(store)


@pytest.mark.slow  # an installer boot; the Nova hung-installer test stays
def test_hung_installer_is_reported_with_console_tail(params, local_env, setup):
    config, store, tmp = setup
    result = builds.hung_install(config, tmp, params, local_env)
    assert result.returncode == 1
    error = builds.record(result)["status_detail"]["error"]
    assert error.startswith(builds.HUNG_INSTALL_ERROR)
    _assert_nothing_left(store)


@pytest.mark.slow  # its own user is its own JEOS: a whole install, then 120 s
def test_ssh_auth_failure_is_one_line(local_env, setup):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", "--parameter", "default_user",
                           "nobody", "--parameter", "disk_size", "2",
                           "--parameter", "ssh_timeout", "120",
                           "--file-parameter", "install_script",
                           builds.write_script(tmp),
                           builds.write_template(tmp), env=local_env)
    assert result.returncode == 1
    error = builds.record(result)["status_detail"]["error"]
    assert "SSH authentication as 'nobody'" in error
    _assert_nothing_left(store)


def test_ctrl_c_during_customization_cleans_up(params, local_env, setup):
    config, store, tmp = setup
    template = builds.write_template(tmp, command="sleep 600")
    proc = builds.start(config, "base_image", *params, template,
                        env=local_env)
    builds.wait_for_activity(proc, store, "Running command 'mark'")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert json.loads(out)["status_detail"]["error"] == (
        "interrupted at 70 %: Running command 'mark'")
    _assert_nothing_left(store)

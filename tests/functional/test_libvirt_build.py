"""Local builds with the libvirt plugin: the example template reaches
COMPLETE in transient libvirt domains, and a build killed with kill -9,
which a sweep leaves for resuming, is given up to nothing (no domain,
storage pool, volume or file)."""
import os
import signal
import subprocess

import pytest

from tests.functional import builds
from tests.functional.libvirtd import libvirt_left
from tests.functional.libvirtd import libvirtd  # noqa: F401 (fixture)
from tests.functional.libvirtd import virsh

EXAMPLE = os.path.join(builds.REPO, "examples", "test-cloud.tdl")
PARAMS = ("--parameter", "os_plugin", "libvirt",
          "--parameter", "default_user", "debian",
          "--parameter", "command_prefix", "sudo",
          "--parameter", "disk_size", "2")


@pytest.mark.usefixtures("libvirtd")
def test_libvirt_build_of_the_example_reaches_complete(local_env, setup):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *PARAMS, EXAMPLE,
                           env=local_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    assert (image["status"], image["plugin"]) == ("COMPLETE", "libvirt")
    assert "locally with libvirt" in result.stderr
    info = subprocess.run(["qemu-img", "info", "--output", "json",
                           image["data"]], capture_output=True, text=True)
    assert '"format": "qcow2"' in info.stdout
    assert '"backing-filename"' not in info.stdout
    icicle = image["icicle"].replace("'", '"')
    assert '<package name="hello_' in icicle and '<package name="tree_' in \
        icicle
    assert libvirt_left(image["identifier"]) == []
    assert builds.store_leftovers(store) == []
    print("libvirt build: %s" % image["timings"])


@pytest.mark.usefixtures("libvirtd")
def test_libvirt_build_killed_by_kill_9_is_abandoned_to_nothing(local_env,
                                                                setup):
    config, store, tmp = setup
    cache_dir = os.path.join(builds.JEOS_CACHE_DIR, "libvirt")
    cache = os.listdir(cache_dir) if os.path.isdir(cache_dir) else []
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", *PARAMS, EXAMPLE,
                            env=local_env, stderr=log)
        try:
            record = builds.wait_for_record(
                proc, store, lambda r: r["status_detail"]["activity"]
                .startswith("Waiting for SSH"))
            build_id = record["identifier"]
            # The operator sees the build's machine.
            assert [kind for kind, _ in libvirt_left(build_id)] == [
                "domain", "pool", "work directory"]
            assert "imgfac-%s-guest-" % build_id in virsh("list").stdout
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)

    # It may be resumed: a sweep leaves it; given up, one pass removes it.
    left = builds.imgfac(config, "sweep", "--dry-run", env=local_env)
    assert left.returncode == 0 and build_id not in left.stdout, left.stdout
    assert len(libvirt_left(build_id)) == 3
    swept = builds.imgfac(config, "resume", "--abandon", build_id,
                          env=local_env, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert "Removed (libvirt): libvirt domain imgfac-%s-guest-" % build_id \
        in swept.stdout
    assert libvirt_left(build_id) == []
    assert builds.read_record(store, build_id)["status"] == "FAILED"
    # The JEOS cache entry the build started from is no leftover, and no
    # entry is QEMU's user's (libvirt gives it a guest's backing file).
    assert set(cache) <= set(os.listdir(cache_dir))
    for name in os.listdir(cache_dir):
        assert os.stat(os.path.join(cache_dir, name)).st_uid == 0
    again = builds.imgfac(config, "sweep", env=local_env)
    assert (again.returncode, again.stdout.strip()) == (0, "Nothing to sweep")


def _killed_at(config, store, tmp, env, activity, *extra):
    """A libvirt build of the example killed -9 once its activity starts
    with ``activity``: its record."""
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", *PARAMS, *extra, EXAMPLE,
                            env=env, stderr=log)
        try:
            return builds.wait_for_record(
                proc, store, lambda r: r["status_detail"]["activity"]
                .startswith(activity), timeout=1800)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)


def _resumed_to_complete(config, store, build_id, env):
    resumed = builds.imgfac(config, "resume", build_id, env=env,
                            timeout=3600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = builds.read_record(store, build_id)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert libvirt_left(build_id) == []
    assert builds.store_leftovers(store) == []
    with open(os.path.join(store, build_id + ".log")) as handle:
        return handle.read()  # the build's log, both runs


@pytest.mark.usefixtures("libvirtd")
def test_libvirt_build_killed_during_the_ssh_wait_resumes(local_env, setup):
    """The guest domain the dead process left is destroyed and the
    customization starts again in the build's own pool and work directory;
    nothing is left but the image."""
    config, store, tmp = setup
    build_id = _killed_at(config, store, tmp, local_env,
                          "Waiting for SSH")["identifier"]
    assert [kind for kind, _ in libvirt_left(build_id)] == [
        "domain", "pool", "work directory"]
    log = _resumed_to_complete(config, store, build_id, local_env)
    assert "Destroying the libvirt domain imgfac-%s-guest-" % build_id in log


@pytest.mark.slow  # an install under TCG
@pytest.mark.usefixtures("libvirtd")
def test_libvirt_build_killed_during_the_install_takes_its_installer_over(
        local_env, setup):
    """libvirt runs the installer, not the dead process: the resumed build
    waits for that same installer and captures its disk."""
    config, store, tmp = setup
    build_id = _killed_at(config, store, tmp, local_env, "Installing",
                          "--parameter", "jeos_cache", "false")["identifier"]
    domains = [name for kind, name in libvirt_left(build_id)
               if kind == "domain"]
    assert len(domains) == 1 and "-installer-" in domains[0]
    log = _resumed_to_complete(config, store, build_id, local_env)
    assert "Taking over libvirt domain %s (running)" % domains[0] in log

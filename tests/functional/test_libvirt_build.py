"""Local builds with the libvirt plugin: the example template reaches
COMPLETE in transient libvirt domains, and a build killed with kill -9 is
swept to nothing (no domain, storage pool, volume or file). libvirtd is
started here when it does not answer (tools/install-deps installs it)."""
import os
import signal
import subprocess

import pytest

from tests import poll
from tests.functional import builds

URI = "qemu:///system"
IMAGES = "/var/lib/libvirt/images"  # the libvirt_images_path default
EXAMPLE = os.path.join(builds.REPO, "examples", "test-cloud.tdl")
PARAMS = ("--parameter", "os_plugin", "libvirt",
          "--parameter", "default_user", "debian",
          "--parameter", "command_prefix", "sudo",
          "--parameter", "disk_size", "2")


def _virsh(*args):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="session")
def libvirtd():
    """A libvirtd answering on qemu:///system (with virtlogd, which keeps
    its QEMU logs), started when none does."""
    if _virsh("version").returncode:
        for daemon in ("virtlogd", "libvirtd"):
            if subprocess.run(["pgrep", "-x", daemon]).returncode:
                subprocess.run([daemon, "-d"], check=True, timeout=60)
        poll.wait_for(lambda: _virsh("version").returncode == 0, 30,
                      "libvirtd to answer", interval=0.2)


def _names(*args):
    return _virsh(*args).stdout.split()


def libvirt_left(build_id):
    """What libvirt and its images directory hold of build ``build_id``."""
    left = [("domain", name) for name in _names("list", "--all", "--name")
            if name.startswith("imgfac-%s-" % build_id)]
    left += [("pool", name) for name in _names("pool-list", "--all", "--name")
             if name == "imgfac-" + build_id]
    left += [("work directory", name) for name in os.listdir(IMAGES)
             if name.startswith(".work-" + build_id)]
    return left


def test_libvirt_build_of_the_example_reaches_complete(libvirtd, local_env,
                                                       setup):
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


def test_libvirt_build_killed_by_kill_9_is_swept_to_nothing(libvirtd,
                                                            local_env, setup):
    config, store, tmp = setup
    cache_dir = os.path.join(builds.JEOS_CACHE_DIR, "libvirt")
    cache = sorted(os.listdir(cache_dir))
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
            assert "imgfac-%s-guest-" % build_id in _virsh("list").stdout
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)

    swept = builds.imgfac(config, "sweep", env=local_env, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert "Removed (libvirt): libvirt domain imgfac-%s-guest-" % build_id \
        in swept.stdout
    assert libvirt_left(build_id) == []
    assert builds.read_record(store, build_id)["status"] == "FAILED"
    # The JEOS cache entry the build started from is no leftover, and is
    # root's again (libvirt gave it to QEMU's user while the guest ran).
    assert sorted(os.listdir(cache_dir)) == cache
    for name in cache:
        assert os.stat(os.path.join(cache_dir, name)).st_uid == 0
    again = builds.imgfac(config, "sweep", env=local_env)
    assert (again.returncode, again.stdout.strip()) == (0, "Nothing to sweep")

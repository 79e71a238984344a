"""Crash safety: a build killed with kill -9 while it waits for SSH on the
customization guest may be resumed, so a sweep leaves it alone; given up
with ``imgfac-nova resume --abandon``, ONE pass removes everything: it exits
0 and nothing of the build is left in the cloud (listed as admin) or on this
machine."""
import os
import signal
import time

import pytest

from tests.functional import builds

EXAMPLE = os.path.join(builds.REPO, "examples", "test-cloud.tdl")
EXAMPLE_PARAMETERS = os.path.join(builds.REPO, "examples",
                                  "test-cloud.parameters.json")
LOCAL_PARAMS = ("--parameter", "default_user", "debian",
                "--parameter", "command_prefix", "sudo",
                "--parameter", "disk_size", "2")


def _waiting_for_ssh(record):
    return record["percent_complete"] == 60 and \
        record["status_detail"]["activity"].startswith("Waiting for SSH")


def _kill_during_ssh_wait(config, store, tmp, args, env):
    """Start a build, kill -9 it during the SSH wait; returns its record."""
    return builds.kill_when(config, store, tmp, ("base_image",) + args, env,
                            _waiting_for_ssh)


def _abandon(config, env, build_id):
    """Give the build up (its resources removed in one pass)."""
    left = builds.imgfac(config, "sweep", "--dry-run", env=env)
    assert left.returncode == 0, left.stderr
    assert build_id not in left.stdout  # it may be resumed: left alone
    started = time.monotonic()
    swept = builds.imgfac(config, "resume", "--abandon", build_id, env=env,
                          timeout=900)
    print(swept.stdout, swept.stderr[-2000:])
    print("abandon took %.1f s" % (time.monotonic() - started))
    assert swept.stdout.startswith("Abandoned image %s\n" % build_id)
    return swept


def _assert_failed_at_ssh_wait(store, identifier):
    record = builds.read_record(store, identifier)
    assert record["status"] == "FAILED"
    error = record["status_detail"]["error"]
    assert error.startswith("abandoned at 60 %: Waiting for SSH on "), error
    assert len(error.splitlines()) == 1


@pytest.mark.slow  # a whole Nova build (~2 min); CI keeps the local one
def test_nova_build_killed_during_ssh_wait_one_sweep(cloud_env, setup, conn,
                                                     admin_conn):
    from novaimagebuilder.machines import nova_sweep
    config, store, tmp = setup
    # Without the JEOS cache the JEOS is a temporary image the sweep removes.
    record = _kill_during_ssh_wait(config, store, tmp, (
        "--parameters", EXAMPLE_PARAMETERS, *builds.FRESH_INSTALL, EXAMPLE),
        cloud_env)
    build_id = record["identifier"]
    seen = [found for found in nova_sweep.leftovers(conn) if found.build == build_id]
    assert {"server", "port", "security group", "keypair", "image"} <= {
        found.kind for found in seen}

    swept = _abandon(config, cloud_env, build_id)
    assert swept.returncode == 0, swept.stderr
    kinds = [line.split(": ", 1)[1].split(" ")[0]
             for line in swept.stdout.splitlines()[1:]]
    order = ["server", "port", "security", "keypair", "image"]
    assert sorted(set(kinds), key=order.index) == order
    assert kinds == sorted(kinds, key=order.index)  # dependants first
    assert swept.stdout.count("Removed (nova): ") == len(seen)
    assert builds.cloud_left(admin_conn, build_id, seen) == []
    _assert_failed_at_ssh_wait(store, build_id)
    again = builds.imgfac(config, "sweep", env=cloud_env)
    assert (again.returncode, again.stdout.strip()) == (0, "Nothing to sweep")


@pytest.mark.usefixtures("local_base_image")  # its JEOS: this build reuses it
def test_local_build_killed_during_ssh_wait_one_sweep(local_env, setup):
    config, store, tmp = setup
    cache = sorted(os.listdir(builds.JEOS_CACHE_DIR))
    record = _kill_during_ssh_wait(config, store, tmp, builds.with_install_script(
        LOCAL_PARAMS, tmp) + (builds.write_template(tmp),), local_env)
    build_id = record["identifier"]
    assert builds.read_record(store, build_id)["properties"].get(
        "jeos_cache") == "hit"
    left = builds.local_left(store, build_id)
    assert {"QEMU process", "store file", "QMP socket directory"} == {
        kind for kind, _ in left}

    swept = _abandon(config, local_env, build_id)
    assert swept.returncode == 0, swept.stderr
    assert "Removed (local): QEMU process " in swept.stdout
    assert builds.local_left(store, build_id) == []
    _assert_failed_at_ssh_wait(store, build_id)
    # the JEOS cache entry the build started from is not a leftover
    assert sorted(os.listdir(builds.JEOS_CACHE_DIR)) == cache


def test_a_sweep_from_another_store_leaves_a_running_build_alone(
        cloud_env, setup, tmp_path, conn, admin_conn):
    from novaimagebuilder.machines import nova_sweep
    config, store, tmp = setup
    other = tmp_path / "other"
    other.mkdir()
    other_config, _ = builds.write_config(other)
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", "--parameters",
                            EXAMPLE_PARAMETERS, *builds.FRESH_INSTALL,
                            EXAMPLE, env=cloud_env, stderr=log)
        try:
            record = builds.wait_for_record(
                proc, store, lambda r: r["status_detail"]["activity"]
                .startswith("Installing Debian"))
            build_id = record["identifier"]
            before = {(f.kind, f.id) for f in nova_sweep.leftovers(conn)
                      if f.build == build_id}
            assert "server" in {kind for kind, _ in before}  # the installer
            swept = builds.imgfac(other_config, "sweep", env=cloud_env)
            assert swept.returncode == 0, swept.stderr
            assert build_id not in swept.stdout
            assert before <= {(f.kind, f.id) for f in nova_sweep.leftovers(conn)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(600)
    record = builds.read_record(store, build_id)
    assert record["status_detail"]["error"].startswith(
        "interrupted at 10 %: Installing Debian 12")
    assert builds.cloud_left(admin_conn, build_id) == []

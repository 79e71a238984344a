"""Builds that survive their process: a Nova build whose CLI is killed with
kill -9 during the install wait goes on with ``imgfac-nova resume ID`` on the
same installer server (the install is not run again), with never more than
one server of the build at a time, and leaves nothing but its result; until
then a sweep leaves it alone. Bad requests to resume are one line, exit 2."""
import json
import os
import signal
import threading

import pytest

from tests.functional import builds

from novaimagebuilder import cloud

EXAMPLE = os.path.join(builds.REPO, "examples", "test-cloud.tdl")
EXAMPLE_PARAMETERS = os.path.join(builds.REPO, "examples",
                                  "test-cloud.parameters.json")


def _servers(conn, build_id):
    return {s.id: s.name for s in conn.compute.servers()
            if (s.metadata or {}).get(cloud.BUILD_TAG) == build_id}


class _Watch(threading.Thread):
    """Counts the build's servers every second until stopped."""

    def __init__(self, conn, build_id):
        super().__init__(daemon=True)
        self.conn, self.build_id = conn, build_id
        self.most, self.seen = 0, set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(1):
            found = _servers(self.conn, self.build_id)
            self.most = max(self.most, len(found))
            self.seen |= set(found)


def _kill_while_installing(config, store, tmp, conn, env):
    """Start a fresh Nova build, kill -9 it while it waits for the
    installer; returns (its id, the installer server's id)."""
    record = builds.kill_when(
        config, store, tmp, ("base_image", "--parameters", EXAMPLE_PARAMETERS,
                             *builds.FRESH_INSTALL, EXAMPLE), env,
        lambda r: r["status_detail"]["activity"].startswith("Installing"))
    installers = _servers(conn, record["identifier"])
    assert len(installers) == 1, installers
    return record["identifier"], next(iter(installers))


def _resume(config, conn, build_id, env, *args):
    """``imgfac-nova resume build_id args``, its servers watched: returns
    (the COMPLETE record, the _Watch)."""
    watch = _Watch(conn, build_id)
    watch.start()
    try:
        resumed = builds.imgfac(config, "resume", build_id, *args, env=env)
    finally:
        watch.stop.set()
        watch.join()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads(resumed.stdout)
    assert record["status"] == "COMPLETE", record["status_detail"]
    return record, watch


@pytest.mark.slow  # an install (~2 min); CI keeps the daemon's (test_api)
def test_a_nova_build_killed_during_the_install_wait_resumes(
        cloud_env, setup, conn, admin_conn):
    config, store, tmp = setup
    build_id, installer = _kill_while_installing(config, store, tmp, conn,
                                                 cloud_env)
    # Resumable: a sweep leaves it, and says why.
    dry = builds.imgfac(config, "sweep", "--dry-run", env=cloud_env)
    assert dry.returncode == 0, dry.stderr
    assert build_id not in dry.stdout
    assert builds.read_record(store, build_id)["status"] == "BUILDING"

    record, watch = _resume(config, conn, build_id, cloud_env)
    # The same installer went on (no second install), then one guest: one
    # server at a time.
    assert watch.most == 1
    assert installer in watch.seen and len(watch.seen) == 2, watch.seen
    with open(record["log"]) as handle:
        log = handle.read()
    assert "Going on with server imgfac-nova-%s-installer (%s)" % (
        build_id, installer) in log
    left = builds.cloud_left(admin_conn, build_id)
    assert [kind for kind, _ in left] == ["image"]  # the result only
    again = builds.imgfac(config, "resume", build_id, env=cloud_env)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "imgfac-nova: error: image %s is COMPLETE: there is nothing to "
        "resume" % build_id)
    builds.delete(config, record, cloud_env, conn)


def test_resume_refuses_in_one_line(cloud_env, setup):
    config, store, tmp = setup
    unknown = builds.imgfac(config, "resume",
                            "6f1c2e9a-0d3b-4c5e-8f7a-1b2c3d4e5f60",
                            env=cloud_env)
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert "6f1c2e9a-0d3b-4c5e-8f7a-1b2c3d4e5f60" in unknown.stderr
    # A build that runs: not to be resumed (nor abandoned) from elsewhere.
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", "--parameters",
                            EXAMPLE_PARAMETERS, *builds.FRESH_INSTALL,
                            EXAMPLE, env=cloud_env, stderr=log)
        try:
            record = builds.wait_for_record(
                proc, store, lambda r: r["status"] == "BUILDING")
            for verb in (("resume",), ("resume", "--abandon")):
                busy = builds.imgfac(config, *verb, record["identifier"],
                                     env=cloud_env)
                assert busy.returncode == 2
                assert busy.stderr.strip().startswith(
                    "imgfac-nova: error: image %s is being built by process "
                    % record["identifier"])
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=600)
    assert builds.read_record(store, record["identifier"])["status"] == \
        "FAILED"


def test_a_crash_between_a_create_and_its_saved_result_makes_one_server(
        cloud_env, setup, conn, admin_conn):
    """Nova made the installer, and the process died before the boot step
    saved it: the resumed boot adopts that server (found by its build tag
    and name) instead of booting a second one. The installer had not
    booted, so the resume needs the template again (its root password is
    never stored)."""
    config, store, tmp = setup
    env = dict(cloud_env, IMGFAC_TEST_CRASH_AFTER="create_server")
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", "--parameters",
                            EXAMPLE_PARAMETERS, *builds.FRESH_INSTALL,
                            EXAMPLE, env=env, stderr=log,
                            module="tests.functional.faults")
        assert proc.wait(900) == 9
    (build_id, record), = builds.records(store).items()
    assert record["status"] == "BUILDING"
    made = _servers(conn, build_id)
    assert list(made.values()) == ["imgfac-nova-%s-installer" % build_id]

    refused = builds.imgfac(config, "resume", build_id, env=cloud_env)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "imgfac-nova: error: image %s's template holds secrets that are "
        "never stored (root password) and the build still needs them: give "
        "the template again with --template FILE" % build_id)
    record, watch = _resume(config, conn, build_id, cloud_env, "--template",
                            EXAMPLE)
    assert watch.most == 1
    assert set(made) <= watch.seen and len(watch.seen) == 2, watch.seen
    assert [kind for kind, _ in builds.cloud_left(admin_conn, build_id)] == [
        "image"]
    builds.delete(config, record, cloud_env, conn)


def test_an_in_cloud_target_whose_process_died_resumes_with_a_new_guest(
        nova_base_image, cloud_env, conn, admin_conn):
    """A target made in the cloud dies as Nova answers its guest's create:
    ``resume`` removes that guest (its SSH key died with the process),
    boots one again from the base and completes; never two guests at
    once, and nothing is left but the target's image."""
    config, store = nova_base_image.config, nova_base_image.store
    before = set(builds.records(store))
    env = dict(cloud_env, IMGFAC_TEST_CRASH_AFTER="create_server")
    proc = builds.start(config, "target_image", "--id",
                        nova_base_image.record["identifier"], "openstack",
                        env=env, module="tests.functional.faults")
    assert proc.wait(900) == 9, proc.stderr.read()[-3000:]
    (target_id, record), = [(i, r) for i, r in builds.records(store).items()
                            if i not in before]
    assert (record["type"], record["status"]) == ("TargetImage", "BUILDING")
    made = _servers(conn, target_id)
    assert list(made.values()) == ["imgfac-nova-%s-guest" % target_id]
    record, watch = _resume(config, conn, target_id, cloud_env)
    assert watch.most == 1
    assert set(made) <= watch.seen and len(watch.seen) == 2, watch.seen
    assert [kind for kind, _ in builds.cloud_left(admin_conn, target_id)] \
        == ["image"]
    deleted = builds.imgfac(config, "delete", target_id, env=cloud_env)
    assert deleted.returncode == 0, deleted.stderr


@pytest.mark.usefixtures("local_base_image")  # its JEOS: this build reuses it
def test_a_local_build_killed_during_the_ssh_wait_resumes(local_env, setup):
    """The guest QEMU the dead process left running is stopped, the
    customization starts again from the JEOS, in the build's own work
    directory; nothing is left but the image."""
    from tests.functional import test_sweep
    config, store, tmp = setup
    args = builds.with_install_script(test_sweep.LOCAL_PARAMS, tmp) + (
        builds.write_template(tmp),)
    record = test_sweep._kill_during_ssh_wait(config, store, tmp, args,
                                              local_env)
    build_id = record["identifier"]
    assert ("QEMU process" in {kind for kind, _ in builds.local_left(
        store, build_id)})  # the guest goes on without its process
    resumed = builds.imgfac(config, "resume", build_id, env=local_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads(resumed.stdout)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["properties"].get("jeos_cache") == "hit"
    left = builds.local_left(store, build_id)
    assert left == [("store file", build_id + ".body")], left
    deleted = builds.imgfac(config, "delete", build_id, env=local_env)
    assert deleted.returncode == 0, deleted.stderr

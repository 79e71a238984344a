"""Failover is resume, in the test cloud: a Nova build posted to the
jobboard whose worker is killed with kill -9 during the install wait is
taken over by the other worker once the dead one's session has expired,
and goes on with the same installer server (the install is not run
again), never more than one server of the build at a time; nothing but
its result is left."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.functional import builds
from tests.functional.test_resume import EXAMPLE
from tests.functional.test_resume import EXAMPLE_PARAMETERS
from tests.functional.test_resume import _servers
from tests.functional.test_resume import _Watch
from tests.functional.zookeeper import zk  # noqa: F401 (fixture)

SESSION = 4


def _worker(config, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "imgfac_nova.worker", "--config-file",
         config], env=env, cwd=builds.REPO, stdout=subprocess.DEVNULL,
        stderr=open(log, "w"))


# A whole install (9 min measured under load): test_resume covers the same
# resume in the main tier, tests/functional/test_workers.py the failover.
@pytest.mark.slow
def test_a_nova_build_whose_worker_is_killed_goes_on_elsewhere(
        zk, cloud_env, setup, conn, admin_conn):  # noqa: F811
    config, store, tmp = setup
    with open(config, "a") as handle:
        handle.write("[jobboard]\nbackend_url = %s-cloud\n"
                     "session_timeout = %d\n" % (zk.url, SESSION))
    # Root password: never stored, so never posted; the guest's user
    # account is enough for the build.
    template = tmp / "no-rootpw.tdl"
    with open(EXAMPLE) as handle:
        template.write_text(handle.read().replace(
            "<rootpw>test-cloud-root</rootpw>", ""))
    first = _worker(config, cloud_env, tmp / "first.log")
    second = None
    try:
        time.sleep(3)  # the first worker takes the build
        cli = builds.start(config, "base_image", "--parameters",
                           EXAMPLE_PARAMETERS, *builds.FRESH_INSTALL,
                           str(template), env=cloud_env,
                           stderr=open(tmp / "cli.log", "w"))
        record = builds.wait_for_record(
            cli, store, lambda r: r["status_detail"]["activity"]
            .startswith("Installing"), interval=0.5)
        build_id = record["identifier"]
        assert record["worker"] == "jobboard:%s:%d" % (
            os.uname().nodename, first.pid)
        [installer] = _servers(conn, build_id)
        second = _worker(config, cloud_env, tmp / "second.log")
        watch = _Watch(conn, build_id)
        watch.start()
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        try:
            out, _ = cli.communicate(timeout=1800)
        finally:
            watch.stop.set()
            watch.join()
        done = builds.record(subprocess.CompletedProcess([], 0, out, ""))
        assert done["status"] == "COMPLETE", done["status_detail"]
        assert done["worker"] == "jobboard:%s:%d" % (
            os.uname().nodename, second.pid)
        assert watch.most == 1
        assert installer in watch.seen and len(watch.seen) == 2, watch.seen
        with open(done["log"]) as handle:
            log = handle.read()
        assert "Going on with server imgfac-nova-%s-installer (%s)" % (
            build_id, installer) in log, log[-3000:]
        left = builds.cloud_left(admin_conn, build_id)
        assert [kind for kind, _ in left] == ["image"]  # the result only
        builds.delete(config, done, cloud_env, conn)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)

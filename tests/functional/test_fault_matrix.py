"""The fault matrix (slow tier): for each pipeline step and each backend, a
build faulted there by (a) an error, (b) SIGTERM, (c) kill -9 then one
``imgfac-nova sweep`` leaves nothing in the cloud (listed as admin) or on this
machine, and its record is FAILED with a one-line error naming the step.

Faults come from the test-only wrapper tests/functional/faults.py. Each case is
one build run up to its step: select rows with -k (e.g. ``-k "nova and SSH"``).
A table row per case (backend, step, fault, leftovers, seconds to clean) is
appended to ``$IMGFAC_FAULT_TABLE`` when set, and printed.
"""
import os
import signal
import time

import pytest

from tests.functional import builds
from tests.functional import test_sweep

#: (step, the activity that starts it) in pipeline order; test-cloud.tdl has
#: one repository, two packages, one file and one command.
STEPS = [
    ("media", "Fetching the install media"),
    ("installer-boot", "Booting the Debian installer"),
    ("install-wait", "Installing Debian 12"),
    ("jeos-capture", "Capturing the JEOS"),
    ("guest-boot", "Booting the JEOS"),
    ("SSH-wait", "Waiting for SSH"),
    ("repositories", "Adding repository"),
    ("packages", "Installing 2 packages"),
    ("files", "Writing file"),
    ("commands", "Running command"),
    ("ICICLE", "Reading the installed packages"),
    ("capture", "Capturing the image"),
    ("cleanup", "Cleaning up"),
]
FAULTS = ("error", "sigterm", "kill9")


@pytest.fixture
def envs(test_cloud):
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    base["PYTHONPATH"] = builds.REPO
    return {"local": dict(base), "nova": dict(base, **test_cloud.exports)}


def _args(backend):
    if backend == "nova":
        return ("--parameters", test_sweep.EXAMPLE_PARAMETERS,
                test_sweep.EXAMPLE)
    return test_sweep.LOCAL_PARAMS + (test_sweep.EXAMPLE,)


def _wait_for_mark(proc, mark, timeout=1800):
    deadline = time.monotonic() + timeout
    while not os.path.exists(mark):
        assert proc.poll() is None, "the build ended before its fault"
        assert time.monotonic() < deadline, "the build never reached its step"
        time.sleep(0.2)


def _record(store):
    metas = [n for n in os.listdir(store) if n.endswith(".meta")]
    assert len(metas) == 1, metas
    return builds.read_record(store, metas[0][:-len(".meta")])


def _table(row):
    line = "%-6s %-15s %-8s leftovers=%-3d clean=%6.1fs  %s" % row
    print("\nFAULT-MATRIX " + line)
    path = os.environ.get("IMGFAC_FAULT_TABLE")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("step,activity", STEPS, ids=[s for s, _ in STEPS])
@pytest.mark.parametrize("backend", ("nova", "local"))
def test_fault_leaves_nothing(backend, step, activity, fault, envs, setup,
                              conn, admin_conn):
    from novaimagebuilder import nova
    config, store, tmp = setup
    mark = str(tmp / "fault-mark")
    env = dict(envs[backend], IMGFAC_TEST_FAULT_MARK=mark,
               IMGFAC_TEST_FAULT="%s:%s" % (
                   "error" if fault == "error" else "pause", activity))
    with open(tmp / "build.log", "w") as log:
        proc = builds.start(config, "base_image", *_args(backend), env=env,
                            module="tests.functional.faults", stderr=log)
        try:
            _wait_for_mark(proc, mark)
            build_id = _record(store)["identifier"]
            seen = [found for found in nova.leftovers(conn)
                    if found.build == build_id]
            started = time.monotonic()
            if fault == "error":
                open(mark + ".go", "w").close()
                assert proc.wait(900) == 1
            elif fault == "sigterm":
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(900) == 1
            else:
                proc.send_signal(signal.SIGKILL)
                proc.wait(60)
                swept = builds.imgfac(config, "sweep", env=envs[backend],
                                      timeout=900)
                assert swept.returncode == 0, swept.stderr[-2000:]
            seconds = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    left = builds.cloud_left(admin_conn, build_id, seen) + \
        builds.local_left(store, build_id)
    record = _record(store)
    error = record["status_detail"]["error"] or ""
    _table((backend, step, fault, len(left), seconds, error[:70]))
    assert left == []
    assert record["status"] == "FAILED"
    assert len(error.splitlines()) == 1 and activity in error, error

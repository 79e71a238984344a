"""The fault matrix (slow tier): for each pipeline step and each backend, a
build faulted there by (a) an error or (b) SIGTERM leaves nothing in the
cloud (listed as admin) or on this machine, and its record is FAILED with a
one-line error naming the step; (c) killed with kill -9, then resumed with
``imgfac-nova resume`` (a build that cannot be resumed abandoned with
``--abandon``) and swept once, it is COMPLETE, or FAILED with a one-line
reason, and nothing of it is left but a COMPLETE build's result; a target
or push killed so is COMPLETE (each build of the chain resumed in turn).

Faults come from the test-only wrapper tests/functional/faults.py. Each case is
one build run up to its step: select rows with -k (e.g. ``-k "nova and SSH"``).
The base-image steps build examples/test-cloud.tdl; the target and provider
steps push the session's base image (built once per backend) to the test
cloud's Glance as a qcow2 target (``provider_image qcow2 @imgfac-test``).
A table row per case (backend, step, fault, leftovers, seconds to clean, and
the outcome of the case's own build: the base image, target image or push
of its step) is appended to ``$IMGFAC_FAULT_TABLE`` when set, and printed.
"""
import os
import signal
import time

import pytest

from tests import poll
from tests.functional import builds
from tests.functional import test_sweep

#: (step, the activity that starts it) in pipeline order; test-cloud.tdl has
#: one repository, two packages, one file and one command.
BASE_STEPS = [
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
#: Steps a matching JEOS cache entry skips: their cases switch the cache off.
BEFORE_JEOS = {"media", "installer-boot", "install-wait", "jeos-capture"}
#: Steps of the image chain after the base image: the qemu-img conversion
#: of the target, the upload to the provider's Glance (the image exists).
CHAIN_STEPS = [
    ("target", "Converting to qcow2"),
    ("provider-push", "Uploading to "),
]
#: Where inside a step its fault comes, in percent of the image: the target's
#: while qemu-img converts (it reports from 20 %).
INSIDE = {"target": 21}
STEPS = BASE_STEPS + CHAIN_STEPS
FAULTS = ("error", "sigterm", "kill9")
PROVIDER = "@imgfac-test"


@pytest.fixture
def envs(test_cloud, cloud_env):
    """The builds' environments; cloud_env also removes, at the end of the
    worker's session, the JEOS cache entries its Nova builds stored."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    base["PYTHONPATH"] = builds.REPO
    # A local build has no cloud; its push names the provider's clouds.yaml
    # entry, found through OS_CLIENT_CONFIG_FILE alone.
    local = dict(base, OS_CLIENT_CONFIG_FILE=test_cloud.clouds_yaml)
    return {"local": local, "nova": cloud_env}


def _base_args(backend, step):
    cache = ("--parameter", "jeos_cache", "false") if step in BEFORE_JEOS \
        else ()
    if backend == "nova":
        return ("--parameters", test_sweep.EXAMPLE_PARAMETERS) + cache + (
            test_sweep.EXAMPLE,)
    return test_sweep.LOCAL_PARAMS + cache + (test_sweep.EXAMPLE,)


def _wait_for_mark(proc, mark, timeout=1800):
    def reached():
        assert proc.poll() is None, "the build ended before its fault"
        return os.path.exists(mark)
    poll.wait_for(reached, timeout, "the build to reach its step",
                  interval=0.2)


def _records(store):
    """``{id: record}`` of the store."""
    return builds.records(store)


def _table(row):
    line = "%-6s %-15s %-8s leftovers=%-3d clean=%6.1fs  %s" % row
    print("\nFAULT-MATRIX " + line)
    path = os.environ.get("IMGFAC_FAULT_TABLE")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


def _where(request, backend, step, tmp):
    """``(config, store, verb arguments)`` of the case: a new store for a
    base-image step, the session base image's store for a chain step."""
    if step not in dict(CHAIN_STEPS):
        config, store = builds.write_config(tmp)
        return config, store, ("base_image",) + _base_args(backend, step)
    base = request.getfixturevalue(backend + "_base_image")
    return base.config, base.store, (
        "provider_image", "qcow2", PROVIDER, "-",
        "--id", base.record["identifier"])


def _cases():
    """(backend, step, activity) of every case. The chain steps push the
    session's base image, so they run with that backend's builds (one
    worker); the base-image steps need nothing shared, so each backend's
    run on a worker of their own and the two workers share the matrix."""
    return [pytest.param(backend, step, activity, id="%s-%s" % (backend, step),
                         marks=pytest.mark.xdist_group(backend + (
                             "-builds" if step in dict(CHAIN_STEPS)
                             else "-faults")))
            for backend in ("nova", "local") for step, activity in STEPS]


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("backend,step,activity", _cases())
def test_fault_leaves_nothing(backend, step, activity, fault, envs, request,
                              tmp_path, conn, admin_conn):
    from novaimagebuilder.machines import nova_sweep
    config, store, args = _where(request, backend, step, tmp_path)
    before = set(_records(store))
    mark = str(tmp_path / "fault-mark")
    env = dict(envs[backend], IMGFAC_TEST_FAULT_MARK=mark,
               IMGFAC_TEST_FAULT="%s:%s@%d" % (
                   "error" if fault == "error" else "pause", activity,
                   INSIDE.get(step, 0)))
    with open(tmp_path / "build.log", "w") as log:
        proc = builds.start(config, *args, env=env,
                            module="tests.functional.faults", stderr=log)
        try:
            _wait_for_mark(proc, mark)
            ours = set(_records(store)) - before
            seen = [found for found in nova_sweep.leftovers(conn)
                    if found.build in ours]
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
                _resume(config, store, before, envs[backend])
            seconds = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    records = {i: r for i, r in _records(store).items() if i not in before}
    failed = [i for i, r in records.items() if r["status"] != "COMPLETE"]
    left = []
    for identifier in records:  # a COMPLETE build's result is no leftover
        done = identifier not in failed
        left += [found for found in builds.cloud_left(
            admin_conn, identifier, seen) if not done or
            found[1] != _result_name(records[identifier])] + [
            found for found in builds.local_left(store, identifier)
            if not done or found[1] != identifier + ".body"]
    faulted = [records[i] for i in failed
               if activity in (records[i]["status_detail"]["error"] or "")]
    if fault == "kill9":  # the case's own build: resumed, or why not
        own = _own(records, step)
        error = "resumed: COMPLETE" if own["status"] == "COMPLETE" else \
            own["status_detail"]["error"]
    else:
        error = faulted[0]["status_detail"]["error"] if faulted else \
            "no record names %r" % activity
    _table((backend, step, fault, len(left), seconds, error[:70]))
    for identifier in set(records) - set(failed):  # resumed to COMPLETE
        deleted = builds.imgfac(config, "delete", identifier,
                                env=envs[backend])
        assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert left == []
    assert all(records[i]["status"] == "FAILED" for i in failed)
    assert len(error.splitlines()) == 1, error
    if fault != "kill9":
        assert faulted, {i: r["status_detail"] for i, r in records.items()}
    elif step in dict(CHAIN_STEPS):  # targets and pushes resume
        assert failed == [], {i: records[i]["status_detail"] for i in failed}


def _own(records, step):
    """The record of the build whose step the case faulted: the base
    image, the target image or the push."""
    kind = {"target": "TargetImage", "provider-push": "ProviderImage"}.get(
        step, "BaseImage")
    [own] = [record for record in records.values() if record["type"] == kind]
    return own


def _result_name(record):
    """The Glance name of a COMPLETE Nova base image (its result)."""
    return "imgfac-nova-" + record["identifier"]


def _resume(config, store, before, env):
    """After a kill -9: resume each build the case started, in chain order
    (a push resumes once its target is COMPLETE); one that cannot be
    resumed is abandoned. Then sweep once."""
    order = ("BaseImage", "TargetImage", "ProviderImage")
    found = _records(store)
    started = sorted(set(found) - before, key=lambda identifier:
                     order.index(found[identifier]["type"]))
    for identifier in started:
        # as it is now: resuming or abandoning one build may end another
        # (the push that was waiting for the target)
        record = _records(store)[identifier]
        if record["status"] not in ("PENDING", "BUILDING"):
            continue
        resumed = builds.imgfac(config, "resume", identifier, env=env,
                                timeout=1800)
        print("resume:", resumed.returncode, resumed.stderr[-1500:])
        if resumed.returncode != 2:
            continue
        abandoned = builds.imgfac(config, "resume", "--abandon", identifier,
                                  env=env, timeout=900)
        assert abandoned.returncode == 0, abandoned.stderr[-2000:]
    swept = builds.imgfac(config, "sweep", env=env, timeout=900)
    assert swept.returncode == 0, swept.stderr[-2000:]

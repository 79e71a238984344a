"""The workers on a Redis jobboard (the tests' own server): a claim
expires unless its worker extends it, so a build outlives its claim's
expiry on a live worker, and a worker killed with kill -9 loses its
builds to another once their claims expire."""
import signal
import time

import pytest

from tests import poll
from tests.functional import builds
from tests.functional.redisserver import redis  # noqa: F401 (fixture)
from tests.functional.test_workers import _building
from tests.functional.test_workers import _finished
from tests.functional.test_workers import _post
from tests.functional.test_workers import _worker_of
from tests.functional.test_workers import processes

EXPIRY = 3  # seconds: [jobboard] claim_expiry of these tests


@pytest.fixture
def board(redis, tmp_path, cli_env):  # noqa: F811
    with processes("backend_url = %s\nclaim_expiry = %d\n" % (
            redis.url, EXPIRY), tmp_path, cli_env) as found:
        yield found


def test_a_build_outlives_its_claims_expiry_on_a_live_worker(
        board, tmp_path):
    run, config, store = board
    first = run("imgfac_nova.worker")
    time.sleep(2)
    cli = _post(run, tmp_path, steps=4, step_seconds=EXPIRY)
    poll.wait_for(_building(store, _worker_of(first)), 60,
                  "the first worker to build")
    run("imgfac_nova.worker")  # would take it if the claim expired
    done = _finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == _worker_of(first)


def test_a_worker_killed_mid_build_another_finishes_it(board, tmp_path):
    run, config, store = board
    first = run("imgfac_nova.worker")
    time.sleep(2)
    cli = _post(run, tmp_path)
    record = poll.wait_for(_building(store, _worker_of(first)), 60,
                           "the first worker to build")
    second = run("imgfac_nova.worker")
    poll.wait_for(lambda: builds.read_record(store, record["identifier"])[
        "percent_complete"] >= 16, 60, "a finished step")
    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    poll.wait_for(_building(store, _worker_of(second)), EXPIRY + 15,
                  "the second worker to take the build over")
    assert time.monotonic() - killed < EXPIRY + 8
    done = _finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == _worker_of(second)


def test_manage_lists_the_workers_holding_builds(board, tmp_path):
    run, config, store = board
    worker = run("imgfac_nova.worker")
    time.sleep(2)
    cli = _post(run, tmp_path, steps=10, step_seconds=1.0)
    record = poll.wait_for(_building(store, _worker_of(worker)), 60,
                           "the worker to build")
    listing = run("imgfac_nova.manage", "workers", "list")
    out, _ = listing.communicate(timeout=60)
    assert out.splitlines() == [
        "worker %s: 1 build(s)" % _worker_of(worker)[len("jobboard:"):],
        "  %s" % record["identifier"],
        "waiting for a worker: 0 build(s)"], open(listing.log).read()
    cli.send_signal(signal.SIGINT)
    assert _finished(cli)["status"] == "FAILED"

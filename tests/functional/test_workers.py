"""Several workers, one queue: base-image builds posted by the CLI to a
ZooKeeper or Redis jobboard (the tests' own server) and run by
imgfac-nova-worker processes (test plugins). On both jobboards: a worker
killed with kill -9 mid-build loses the build to another once its claim
has ended (ZooKeeper: its session expired; Redis: its claim's expiry,
which a live worker keeps extending); imgfac-nova-manage lists workers and
builds. On ZooKeeper: SIGTERM hands a build back at its next step; a build
claimed more than max_claims times fails naming why; any API process
shows the build log of a build a worker runs."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import poll
from tests.functional import builds
from tests.functional import databases
from tests.functional import servers
from tests.functional import workers
from tests.functional.redisserver import redis  # noqa: F401 (fixture)
from tests.functional.zookeeper import zk  # noqa: F401 (fixture)

#: Seconds a dead worker's claim lasts: [jobboard] session_timeout
#: (ZooKeeper) and claim_expiry (Redis) of these tests.
SESSION = 3
LONG_SESSION = 15  # ... and of the test that must not wait for one


@pytest.fixture
def board(zk, tmp_path, cli_env):  # noqa: F811
    """Processes on a ZooKeeper jobboard."""
    with workers.processes(workers.jobboard(zk, tmp_path, SESSION), tmp_path,
                           cli_env) as found:
        yield found


@pytest.fixture(params=["zk", "redis"])
def any_board(request, tmp_path, cli_env):
    """Processes on a ZooKeeper, then a Redis jobboard."""
    server = request.getfixturevalue(request.param)
    with workers.processes(workers.jobboard(server, tmp_path, SESSION),
                           tmp_path, cli_env) as found:
        yield found


def test_a_worker_killed_mid_build_another_finishes_it(any_board, tmp_path):
    run, config, store = any_board
    first = run("imgfac_nova.worker")
    time.sleep(2)  # the first worker takes the build
    cli = workers.post(run, tmp_path)
    record = poll.wait_for(workers.building(store, workers.worker_of(first)), 60,
                           "the first worker to build")
    second = run("imgfac_nova.worker")
    poll.wait_for(lambda: builds.read_record(store, record["identifier"])[
        "percent_complete"] >= 16, 60, "a finished step")
    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    poll.wait_for(workers.building(store, workers.worker_of(second)), SESSION + 15,
                  "the second worker to take the build over")
    taken = time.monotonic() - killed
    assert taken < SESSION + 8, taken
    done = workers.finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == workers.worker_of(second)
    assert cli.returncode == 0
    assert second.poll() is None  # it goes on taking builds


def test_sigterm_hands_the_build_back_at_its_next_step(board, tmp_path):
    run, config, store = board
    first = run("imgfac_nova.worker")
    time.sleep(2)
    cli = workers.post(run, tmp_path, steps=4, step_seconds=2.0)
    record = poll.wait_for(workers.building(store, workers.worker_of(first)), 60,
                           "the first worker to build")
    second = run("imgfac_nova.worker")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, open(first.log).read()
    handed = builds.read_record(store, record["identifier"])
    assert handed["status"] == "BUILDING", handed["status_detail"]
    done = workers.finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == workers.worker_of(second)
    with open(first.log) as handle:
        assert "handed back" in handle.read()


def test_a_build_claimed_more_than_max_claims_fails(board, tmp_path):
    run, config, store = board
    cli = workers.post(run, tmp_path, steps=20, step_seconds=1.0)
    for claim in range(2):  # max_claims = 2: both workers die
        worker = run("imgfac_nova.worker")
        poll.wait_for(workers.building(store, workers.worker_of(worker)), SESSION + 60,
                      "worker %d to take the build" % claim)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    run("imgfac_nova.worker")
    done = workers.finished(cli)
    assert done["status"] == "FAILED"
    assert done["status_detail"]["error"].startswith(
        "claimed 2 times without ending (its workers died or lost their "
        "claims) at ")


def test_a_build_outlives_its_claims_expiry_on_a_live_worker(
        redis, tmp_path, cli_env):  # noqa: F811
    """Redis: the worker extends its claim, so no other takes the build."""
    with workers.processes(workers.jobboard(redis, tmp_path, SESSION),
                           tmp_path, cli_env) as (run, config, store):
        first = run("imgfac_nova.worker")
        time.sleep(2)
        cli = workers.post(run, tmp_path, steps=4, step_seconds=SESSION)
        poll.wait_for(workers.building(store, workers.worker_of(first)), 60,
                      "the first worker to build")
        run("imgfac_nova.worker")  # would take it if the claim expired
        done = workers.finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == workers.worker_of(first)


def test_manage_lists_workers_and_their_builds(any_board, tmp_path):
    run, config, store = any_board
    worker = run("imgfac_nova.worker")
    time.sleep(2)
    cli = workers.post(run, tmp_path, steps=10, step_seconds=1.0)
    record = poll.wait_for(workers.building(store, workers.worker_of(worker)), 60,
                           "the worker to build")
    listing = run("imgfac_nova.manage", "workers", "list")
    out, _ = listing.communicate(timeout=60)
    name = "%s:%d" % (os.uname().nodename, worker.pid)
    assert out.splitlines() == [
        "worker %s: 1 build(s)" % name, "  %s" % record["identifier"],
        "waiting for a worker: 0 build(s)"], open(listing.log).read()
    cli.send_signal(signal.SIGINT)  # the CLI asks the build to stop
    done = workers.finished(cli)
    assert done["status"] == "FAILED"


def test_a_worker_without_a_jobboard_is_one_line(board, tmp_path):
    run, config, store = board
    (tmp_path / "none.conf").write_text("[DEFAULT]\nstorage_path = %s\n"
                                        % store)
    proc = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.worker", "--config-file",
         str(tmp_path / "none.conf")], capture_output=True, text=True,
        timeout=60, cwd=builds.REPO)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("imgfac-nova-worker: error: no jobboard: "
                                   "set [jobboard] backend_url")


def test_the_rest_daemon_posts_base_image_builds_for_the_workers(
        board, tmp_path):
    """A noauth REST application with the jobboard: a base-image build is
    accepted (202, PENDING) and a worker completes it; one holding a
    secret is refused (400) and nothing is stored."""
    from imgfac_nova.api import deploy
    from tests.unit import test_api
    run, config, store = board
    run("imgfac_nova.worker")
    conf = test_api._conf(config)
    service = deploy.service(conf)
    client = test_api.Client(deploy.deploy(conf, service), service)
    try:
        answer = client.post("/imagefactory/base_images", body={
            "base_image": {"template": workers.TEMPLATE,
                           "parameters": {"steps": 2}}})
        assert answer.status_int == 202, answer.text
        accepted = answer.json["base_image"]
        assert accepted["status"] == "PENDING"
        done = client.wait(test_api._path(accepted), timeout=90)
        assert done["percent_complete"] == 100
        assert builds.read_record(store, done["id"])["worker"].startswith(
            "jobboard:")
        secret = client.post("/imagefactory/base_images", body={
            "base_image": {"template": workers.TEMPLATE.replace(
                "</os>", "<rootpw>s3cret</rootpw></os>")}})
        assert secret.status_int == 400
        assert "cannot hold secrets" in secret.text
        assert list(builds.records(store)) == [done["id"]]
    finally:
        service.shutdown(callback_timeout=5)


def test_an_api_on_another_host_shows_the_log_of_a_running_build(
        board, tmp_path):
    """A REST application with an image directory of its own (as on another
    host), on the workers' database: it answers the build log of a build a
    worker runs, while it runs (from the database: no log file is on its
    side), and all of it once the build has ended."""
    from imgfac_nova.api import deploy
    from tests.unit import test_api
    run, config, store = board
    run("imgfac_nova.worker")
    elsewhere = tmp_path / "elsewhere.conf"
    with open(config) as handle:  # the workers' database, named outright
        elsewhere.write_text(handle.read().replace(
            databases.config_section(store), "").replace(
                "storage_path = %s\n" % store,
                "storage_path = %s\n" % (tmp_path / "elsewhere")) +
            "[database]\nconnection = %s\n" % databases.url(store))
    conf = test_api._conf(str(elsewhere))
    service = deploy.service(conf)
    client = test_api.Client(deploy.deploy(conf, service), service)
    try:
        answer = client.post("/imagefactory/base_images", body={
            "base_image": {"template": workers.TEMPLATE, "parameters": {
                "steps": 8, "step_seconds": 1}}})
        assert answer.status_int == 202, answer.text
        image = answer.json["base_image"]
        path = test_api._path(image)

        def shown():
            log = client.get(path + "/build_log").text
            return "25% Step 2" in log and log
        log = poll.wait_for(shown, 60, "the running build's log")
        assert client.get(path).json["base_image"]["status"] == "BUILDING"
        assert "Step 7" not in log
        assert not os.path.exists(tmp_path / "elsewhere" / (
            image["id"] + ".log"))
        client.wait(path, timeout=120)
        with open(os.path.join(store, image["id"] + ".log")) as handle:
            assert client.get(path + "/build_log").text == handle.read()
    finally:
        service.shutdown(callback_timeout=5)


def test_a_daemon_whose_jobboard_is_unreachable_is_one_line(tmp_path):
    port = servers.free_port()
    config = tmp_path / "c.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\n[api]\n"
                      "auth_strategy = noauth\nbind_port = %d\n[jobboard]\n"
                      "backend_url = zookeeper://127.0.0.1:%d\n"
                      "connect_timeout = 1\n" % (
                          tmp_path / "store", servers.free_port(), port))
    proc = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.api.server", "--config-file",
         str(config)], capture_output=True, text=True, timeout=120,
        cwd=builds.REPO)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "imgfac-nova-api: error: cannot reach the jobboard at "
        "127.0.0.1:%d: Connection time-out" % port)


def test_zookeeper_stopped_and_started_again_while_a_build_runs(
        board, zk, tmp_path):  # noqa: F811
    """The build waits at its next step while the jobboard cannot be
    asked, then goes on (its worker's session outlived the outage)."""
    run, config, store = board
    worker = run("imgfac_nova.worker")
    time.sleep(2)
    cli = workers.post(run, tmp_path, steps=8, step_seconds=1.0)
    record = poll.wait_for(workers.building(store, workers.worker_of(worker)), 60,
                           "the worker to build")
    poll.wait_for(lambda: builds.read_record(store, record["identifier"])[
        "percent_complete"] >= 25, 60, "a finished step")
    zk.stop()
    time.sleep(1)
    zk.start()
    done = workers.finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == workers.worker_of(worker)
    assert worker.poll() is None


def test_a_second_sigterm_stops_the_worker_at_once(
        zk, tmp_path, cli_env):  # noqa: F811
    with workers.processes(workers.jobboard(zk, tmp_path, LONG_SESSION),
                           tmp_path, cli_env) as found:
        _second_sigterm(*found, tmp_path)


def _second_sigterm(run, config, store, tmp_path):
    first = run("imgfac_nova.worker")
    time.sleep(2)
    cli = workers.post(run, tmp_path, steps=3, step_seconds=20.0)
    poll.wait_for(workers.building(store, workers.worker_of(first)), 60,
                  "the first worker to build")
    second = run("imgfac_nova.worker")
    first.send_signal(signal.SIGTERM)
    time.sleep(1)
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 1, open(first.log).read()
    stopped = time.monotonic()
    poll.wait_for(workers.building(store, workers.worker_of(second)), 30,
                  "the second worker to take the build over")
    # Its claim went with its session: no session timeout waited for.
    assert time.monotonic() - stopped < LONG_SESSION
    cli.send_signal(signal.SIGINT)
    assert workers.finished(cli)["status"] == "FAILED"  # cancelled there


def test_builds_posted_to_two_daemons_spread_over_two_workers(
        zk, tmp_path, cli_env):  # noqa: F811
    """Two REST applications on one database and jobboard, two workers
    taking one build at a time: four builds posted alternately to both
    all complete, on both workers."""
    from imgfac_nova.api import deploy
    from tests.unit import test_api
    with workers.processes(
            workers.jobboard(zk, tmp_path, SESSION) +
            "[worker]\nmax_concurrent_builds = 1\n",
            tmp_path, cli_env) as (run, config, store):
        started = [run("imgfac_nova.worker") for _ in range(2)]
        clients = []
        for _ in range(2):
            conf = test_api._conf(config)
            service = deploy.service(conf)
            clients.append(test_api.Client(deploy.deploy(conf, service),
                                           service))
        try:
            accepted = []
            for number in range(4):
                answer = clients[number % 2].post(
                    "/imagefactory/base_images", body={"base_image": {
                        "template": workers.TEMPLATE, "parameters": {
                            "steps": 3, "step_seconds": 1}}})
                assert answer.status_int == 202, answer.text
                accepted.append(answer.json["base_image"])
            for number, image in enumerate(accepted):
                done = clients[(number + 1) % 2].wait(
                    test_api._path(image), timeout=180)
                assert done["percent_complete"] == 100
        finally:
            for client in clients:
                client.service.shutdown(callback_timeout=5)
        ran = {record["worker"] for record in builds.records(store).values()}
        assert ran == {workers.worker_of(worker) for worker in started}


def test_a_paused_worker_that_lost_its_claim_hands_the_build_back(
        board, tmp_path):
    """A worker stopped (SIGSTOP) longer than its session: another takes
    the build over; the paused one, woken up, stops at its next step
    without touching the build, is listed again and takes new builds."""
    run, config, store = board
    first = run("imgfac_nova.worker")
    time.sleep(2)
    cli = workers.post(run, tmp_path, steps=6, step_seconds=2.0)
    record = poll.wait_for(workers.building(store, workers.worker_of(first)), 60,
                           "the first worker to build")
    second = run("imgfac_nova.worker")
    time.sleep(2)
    first.send_signal(signal.SIGSTOP)
    try:
        poll.wait_for(workers.building(store, workers.worker_of(second)), SESSION + 30,
                      "the second worker to take the build over")
    finally:
        first.send_signal(signal.SIGCONT)
    done = workers.finished(cli)
    assert done["status"] == "COMPLETE", done["status_detail"]
    assert done["worker"] == workers.worker_of(second)
    with open(first.log) as handle:
        assert "handed back" in handle.read()
    name = "%s:%d" % (os.uname().nodename, first.pid)

    def listed():
        listing = run("imgfac_nova.manage", "workers", "list")
        out, _ = listing.communicate(timeout=60)
        return "worker %s: 0 build(s)" % name in out.splitlines()
    poll.wait_for(listed, SESSION * 3 + 30, "the first worker listed again",
                  interval=2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    again = workers.finished(workers.post(run, tmp_path, steps=1))
    assert again["status"] == "COMPLETE" and again["identifier"] != \
        record["identifier"]
    assert again["worker"] == workers.worker_of(first)


def test_a_worker_whose_database_is_unreachable_is_one_line(tmp_path):
    port = servers.free_port()
    config = tmp_path / "c.conf"
    config.write_text("[database]\nconnection = mysql+pymysql://imgfac:"
                      "s3cret@127.0.0.1:%d/imgfac\n[jobboard]\nbackend_url = "
                      "zookeeper://127.0.0.1:%d\n" % (port, port))
    proc = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.worker", "--config-file",
         str(config)], capture_output=True, text=True, timeout=120,
        cwd=builds.REPO)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("imgfac-nova-worker: error: ")
    assert "127.0.0.1:%d" % port in line and "s3cret" not in line

"""Builds in the test cloud through the fault proxy (tools/testcloud/
faultproxy.py) in front of Nova, Glance and Neutron: with a tenth of the
requests failing (resets, 503s, lost answers, delays) a build completes,
its retries in its log and nothing created twice; with every request
failing it fails in one line, soon, and leaves nothing."""
import collections
import json
import os
import socket
import sys
import threading
import time

import pytest
import yaml

from tests.functional import builds

sys.path.insert(0, os.path.join(builds.REPO, "tools"))
from testcloud import faultproxy  # noqa: E402

SERVICES = ("compute", "image", "network")


@pytest.fixture
def faulty_cloud(test_cloud, conn, tmp_path):
    """``start(fraction, seed, modes)``: a fault proxy in front of the test cloud's
    endpoints, and the environment of a build whose clouds.yaml entry
    (``imgfac-ft-faulty``, the imgfac user's) goes through it."""
    proxies = []

    def start(fraction, seed, modes=faultproxy.MODES):
        proxy = faultproxy.FaultProxy(
            {service: conn.endpoint_for(service) for service in SERVICES},
            fraction, seed, modes, delay=1.0).start()
        proxies.append(proxy)
        with open(test_cloud.clouds_yaml) as handle:
            clouds = yaml.safe_load(handle)
        entry = dict(clouds["clouds"]["imgfac-test"])
        for service, url in proxy.endpoints.items():
            entry["%s_endpoint_override" % service] = url
        clouds["clouds"]["imgfac-ft-faulty"] = entry
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump(clouds))
        os.chmod(path, 0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(PYTHONPATH=builds.REPO, OS_CLIENT_CONFIG_FILE=str(path),
                   OS_CLOUD="imgfac-ft-faulty")
        return proxy, env
    yield start
    for proxy in proxies:
        proxy.stop()


class Census:
    """Every tagged resource a process made, listed every few seconds
    (directly, not through the proxy) while it runs: ``{(kind, name): set
    of ids}``."""

    def __init__(self, conn, pid):
        self.owner = "%s:%d" % (socket.gethostname(), pid)
        self.seen = collections.defaultdict(set)
        self._conn = conn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        from novaimagebuilder.machines import nova_sweep
        while not self._stop.wait(3):
            for found in nova_sweep.leftovers(self._conn):
                if found.owner == self.owner:
                    self.seen[found.kind, found.name].add(found.id)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def twice(self):
        return {key: ids for key, ids in self.seen.items() if len(ids) > 1}


def test_a_build_rides_out_a_tenth_of_requests_failing(
        faulty_cloud, setup, conn, tmp_path):
    proxy, env = faulty_cloud(0.1, seed=27)
    config, store, tmp = setup
    log = open(tmp_path / "stderr.log", "w+")
    proc = builds.start(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        *builds.FRESH_INSTALL, "--parameter", "security_groups", "default",
        builds.write_template(tmp), env=env, stderr=log)
    census = Census(conn, proc.pid)
    try:
        out, _ = proc.communicate(timeout=1800)
    finally:
        census.stop()
    image = json.loads(out)
    glance_id = image["properties"].get("x-image-properties-glance_id")
    try:
        log.seek(0)
        assert proc.returncode == 0, (image["status_detail"],
                                      log.read()[-3000:])
        assert image["status"] == "COMPLETE"
        counts = proxy.faults.counts
        print("fault proxy: %s" % dict(counts))
        assert counts["requests"] > 100
        assert sum(counts[m] for m in ("reset", "503", "lost")) >= 5
        with open(os.path.join(store, image["identifier"] + ".log")) as f:
            build_log = f.read()
        retried = [line for line in build_log.splitlines()
                   if " novaimagebuilder.retries " in line]
        print("\n".join(retried))
        assert retried
        # Each tagged resource was made once: one id per kind and name.
        assert census.seen and census.twice() == {}
        kinds = collections.Counter(kind for kind, _ in census.seen)
        assert kinds["server"] == 2, census.seen  # installer, then guest
    finally:
        if glance_id:
            conn.image.delete_image(glance_id, ignore_missing=True)


def test_every_request_failing_fails_soon_and_leaves_nothing(
        faulty_cloud, setup, conn, cloud_env):
    proxy, env = faulty_cloud(1.0, seed=27, modes=("reset", "503", "lost"))
    config, store, tmp = setup
    started = time.monotonic()
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        builds.write_template(tmp), env=env, timeout=600)
    took = time.monotonic() - started
    assert result.returncode in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "(HTTP 503)" in lines[0] or "cannot reach the cloud" in lines[0]
    assert took < 120, took
    assert proxy.faults.counts["requests"] >= 5  # retried, then gave up
    swept = builds.imgfac(config, "sweep", env=cloud_env)
    assert swept.returncode == 0, swept.stderr
    assert builds.made_by(conn, result) == []

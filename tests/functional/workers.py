"""What the tests of workers share: a configuration on a jobboard, the
processes started on it (workers, the CLI, imgfac-nova-manage), builds of
the test plugin posted through the CLI, and the records they leave."""
import contextlib
import os
import subprocess
import sys

from tests.functional import builds
from tests.functional import databases

TEMPLATE = """<template>
  <name>queued</name>
  <os>
    <name>TestOS</name><version>1</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
  </os>
</template>
"""


@contextlib.contextmanager
def processes(options, tmp_path, env):
    """``(run, config, store)``: ``run(module, *args)`` starts a console
    script with a configuration whose [jobboard] holds ``options``;
    what it started is killed at the end."""
    store = tmp_path / "store"
    config = tmp_path / "imgfac-nova.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\n[jobboard]\n"
                      "max_claims = 2\n%s%s" % (
                          store, options, databases.config_section(store)))
    (tmp_path / "t.tdl").write_text(TEMPLATE)
    started = []

    def run(module, *args):
        log = open(tmp_path / ("%s-%d.log" % (module, len(started))), "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--config-file", str(config),
             *args], env=env, cwd=builds.REPO, stdout=subprocess.PIPE,
            stderr=log, text=True)
        proc.log = log.name
        started.append(proc)
        return proc
    try:
        manage = run("imgfac_nova.manage", "db", "sync")
        assert manage.wait(60) == 0, open(manage.log).read()
        yield run, str(config), str(store)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def jobboard(server, tmp_path, claim_seconds):
    """The [jobboard] options of a test on ``server`` (ZooKeeper: its own
    jobs), a dead worker's claim lasting ``claim_seconds``."""
    if server.name == "redis":  # one database: the jobs of one test at once
        return "backend_url = %s\nclaim_expiry = %d\n" % (
            server.url, claim_seconds)
    return "backend_url = %s-%s\nsession_timeout = %d\n" % (
        server.url, tmp_path.name, claim_seconds)


def post(run, tmp_path, steps=6, step_seconds=1.0):
    return run("imgfac_nova.cli", "--output", "json", "base_image",
               "--parameter", "steps", str(steps), "--parameter",
               "step_seconds", str(step_seconds), str(tmp_path / "t.tdl"))


def worker_of(proc):
    return "jobboard:%s:%d" % (os.uname().nodename, proc.pid)


def building(store, worker):
    def found():
        for record in builds.records(store).values():
            if record["status"] == "BUILDING" and record["worker"] == worker:
                return record
        return None
    return found


def finished(cli):
    out, _ = cli.communicate(timeout=300)
    return builds.record(subprocess.CompletedProcess([], 0, out, ""))

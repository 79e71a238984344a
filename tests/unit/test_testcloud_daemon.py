"""A test-cloud daemon that replaces what ran in its place before
(tools/testcloud/process.py): start() stops the old process first, stop()
stops both, and a running daemon is left alone."""
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "tools"))
from testcloud import layout  # noqa: E402
from testcloud import process  # noqa: E402


def sleeper(marker):
    return [sys.executable, "-c", "import time; time.sleep(120)", marker]


def gone(proc, timeout=10):
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.poll() is not None


def test_start_replaces_the_old_process_and_is_idempotent(tmp_path):
    tag = uuid.uuid4().hex
    old = subprocess.Popen(sleeper("old-www-" + tag), start_new_session=True)
    where = layout.Layout(str(tmp_path))
    where.make_dirs()
    daemon = process.Daemon(where, "www", sleeper("new-www-" + tag),
                            "new-www-" + tag, replaces=("old-www-" + tag,))
    try:
        assert daemon.start() is True
        assert gone(old)
        pid = daemon.pid()
        assert pid and "new-www-" + tag in process._cmdline(pid)
        assert daemon.start() is False and daemon.pid() == pid
    finally:
        daemon.stop(timeout=5)
        old.kill()
        old.wait()
    assert daemon.pid() is None


def test_stop_stops_an_old_process_too(tmp_path):
    tag = uuid.uuid4().hex
    old = subprocess.Popen(sleeper("old-www-" + tag), start_new_session=True)
    where = layout.Layout(str(tmp_path))
    where.make_dirs()
    daemon = process.Daemon(where, "www", sleeper("new-www-" + tag),
                            "new-www-" + tag, replaces=("old-www-" + tag,))
    try:
        assert daemon.stop(timeout=5) is True
        assert gone(old)
    finally:
        old.kill()
        old.wait()

"""A test-cloud daemon that replaces what ran in its place before
(tools/testcloud/process.py): start() stops the old process first, stop()
stops both, and a running daemon is left alone."""
import os
import subprocess
import sys
import uuid

import pytest

from tests import poll

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "tools"))
from testcloud import layout  # noqa: E402
from testcloud import process  # noqa: E402


def sleeper(marker):
    return [sys.executable, "-c", "import time; time.sleep(120)", marker]


def gone(proc, timeout=10):
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture
def old_and_new(tmp_path):
    """A process standing for the old www, and the daemon that replaces it:
    ``(old process, daemon, tag)``; the old one is killed afterwards."""
    tag = uuid.uuid4().hex
    old = subprocess.Popen(sleeper("old-www-" + tag), start_new_session=True)
    where = layout.Layout(str(tmp_path))
    where.make_dirs()
    daemon = process.Daemon(where, "www", sleeper("new-www-" + tag),
                            "new-www-" + tag, replaces=("old-www-" + tag,))
    # The old process must be what the daemon looks for (a live session
    # leader naming the marker) before a test starts: one CI run under load
    # saw stop() find nothing, once.
    poll.wait_for(
        lambda: daemon.find_all("old-www-" + tag) == [old.pid], 10,
        lambda: "the old process (exit, command line, session: %r)" % ((
            old.poll(), process._cmdline(old.pid), process._session(old.pid)),),
        interval=0.1)
    yield old, daemon, tag
    old.kill()
    old.wait()


def test_start_replaces_the_old_process_and_is_idempotent(old_and_new):
    old, daemon, tag = old_and_new
    try:
        assert daemon.start() is True
        assert gone(old)
        pid = daemon.pid()
        assert pid and "new-www-" + tag in process._cmdline(pid)
        assert daemon.start() is False and daemon.pid() == pid
    finally:
        daemon.stop(timeout=5)
    assert daemon.pid() is None


def test_stop_stops_an_old_process_too(old_and_new):
    old, daemon, _ = old_and_new
    assert daemon.stop(timeout=5) is True
    assert gone(old)

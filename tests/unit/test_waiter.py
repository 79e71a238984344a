import threading
import time

import pytest

from novaimagebuilder import errors
from novaimagebuilder import waiter


def test_returns_done_state_and_reports_progress():
    states = iter(["BUILD", "BUILD", "ACTIVE"])
    seen = []
    result = waiter.wait_for("waiting for server", lambda: next(states),
                             lambda s: s == "ACTIVE", timeout=5, interval=0.01,
                             progress=lambda s, e: seen.append(s))
    assert result == "ACTIVE"
    assert seen == ["BUILD", "BUILD", "ACTIVE"]


def test_failure_state_is_one_line():
    with pytest.raises(errors.WaitFailed) as exc:
        waiter.wait_for("waiting for server x", lambda: "ERROR",
                        lambda s: False, timeout=5, interval=0.01,
                        failed=lambda s: "Nova says: no valid host"
                        if s == "ERROR" else None)
    assert str(exc.value) == "waiting for server x: Nova says: no valid host"


def test_timeout():
    started = time.monotonic()
    with pytest.raises(errors.WaitTimeout, match="timed out waiting for x "
                       r"\(after 0 s\)"):
        waiter.wait_for("waiting for x", lambda: 1, lambda s: False,
                        timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 2


def test_inactivity_detected_before_overall_timeout():
    with pytest.raises(errors.WaitTimeout,
                       match="waiting for installer: no activity for 0 s"):
        waiter.wait_for("waiting for installer", lambda: "same",
                        lambda s: False, timeout=30, interval=0.02,
                        activity=lambda s: s, inactivity=0.2)


def test_activity_keeps_it_alive():
    counter = iter(range(1000))
    state = waiter.wait_for("x", lambda: next(counter), lambda s: s >= 15,
                            timeout=10, interval=0.02, max_interval=0.02,
                            activity=lambda s: s, inactivity=0.1)
    assert state == 15


def test_cancel_interrupts_sleep_at_once():
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(errors.Cancelled):
        waiter.wait_for("x", lambda: 1, lambda s: False, timeout=60,
                        interval=30, cancel=cancel)
    assert time.monotonic() - started < 5


def test_backoff_grows_to_max():
    cancel = threading.Event()
    gaps = []
    last = time.monotonic()
    for n, _ in enumerate(waiter.iterate(5, "x", interval=0.01,
                                         max_interval=0.08, backoff=2,
                                         cancel=cancel)):
        now = time.monotonic()
        gaps.append(now - last)
        last = now
        if n == 6:
            break
    assert gaps[2] < gaps[5]
    assert max(gaps) < 0.5


class _RecordingEvent(threading.Event):
    """A cancel event that records each pause instead of sleeping it."""

    def __init__(self):
        super().__init__()
        self.pauses = []

    def wait(self, timeout=None):
        self.pauses.append(timeout)
        return False


def test_state_waits_notice_a_change_within_the_notice_interval():
    # A server that takes minutes to stop is still polled every
    # NOTICE_WITHIN seconds at the end, so the build notices within it.
    cancel = _RecordingEvent()
    polls = iter(range(100))
    waiter.wait_for("x", lambda: next(polls), lambda n: n == 40,
                    timeout=3600, cancel=cancel)
    assert len(cancel.pauses) == 40
    assert cancel.pauses[0] == 0.5
    assert cancel.pauses == sorted(cancel.pauses)
    assert max(cancel.pauses) == waiter.NOTICE_WITHIN < 2


def test_pause_never_overshoots_the_deadline():
    cancel = _RecordingEvent()
    with pytest.raises(errors.WaitTimeout):
        waiter.wait_for("x", lambda: 1, lambda s: False, timeout=0.2,
                        interval=5, cancel=cancel)
    assert cancel.pauses and max(cancel.pauses) <= 0.2


def test_waits_on_bytes_scale_with_their_size():
    gib = 1024 ** 3
    assert waiter.for_size(0, 600) == 600
    assert waiter.for_size(1, 600) == 600 + waiter.SECONDS_PER_GIB
    assert waiter.for_size(20 * gib, 240, 30) == 840
    assert waiter.for_size(20 * gib + 1, 240, 30) == 870  # a GiB begun
    assert waiter.describe(840, 20 * gib) == " (up to 14 min for 20 GiB)"
    assert waiter.describe(841, int(1.5 * gib)) == \
        " (up to 15 min for 1.5 GiB)"

"""The one wait primitive: every poll of the cloud or a VM goes through here.

:func:`iterate` is a generator that paces attempts (with backoff) until a
deadline and raises :class:`~novaimagebuilder.errors.WaitTimeout` after it;
:func:`wait_for` builds on it to poll a state until it is done, failed, stuck, or
too late. Sleeping waits on the cancel event, so a Ctrl-C is noticed at once.

A state wait polls often enough that a change is noticed within
:data:`NOTICE_WITHIN` seconds (plus one poll): a build spends minutes in
waits, and time between a server stopping and the build noticing is time
taken from every build. Retries of an action that failed (SSH attempts,
callbacks) back off further.
"""
import threading
import time

from novaimagebuilder import errors

#: The longest pause between two polls of a state (seconds).
NOTICE_WITHIN = 1.5


def iterate(timeout, message, interval=1.0, max_interval=10.0, backoff=1.5,
            cancel=None):
    """Yield the elapsed seconds before each attempt until ``timeout`` passes.

    ``message`` (a str, or a callable returning one) becomes the WaitTimeout's
    text. Raises Cancelled when ``cancel`` (a threading.Event) is set.
    """
    cancel = cancel or threading.Event()
    start = time.monotonic()
    while True:
        if cancel.is_set():
            raise errors.Cancelled()
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            text = message() if callable(message) else message
            raise errors.WaitTimeout("%s (after %d s)" % (text, timeout))
        yield elapsed
        remaining = timeout - (time.monotonic() - start)
        if cancel.wait(max(0.0, min(interval, remaining))):
            raise errors.Cancelled()
        interval = min(interval * backoff, max_interval)


def wait_for(what, poll, done, timeout, failed=None, activity=None,
             inactivity=None, progress=None, cancel=None, interval=0.5,
             max_interval=NOTICE_WITHIN, backoff=1.5):
    """Poll until ``done(state)``; return that state.

    - ``poll()`` returns the current state.
    - ``failed(state)`` returns a one-line reason when the state is a failure.
    - ``activity(state)`` returns a value that changes while the thing is alive
      (e.g. the length of a console log); unchanged for ``inactivity`` seconds
      means it is stuck.
    - ``progress(state, elapsed)`` is called after every poll.
    ``what`` names the wait in errors: "waiting for server x to stop".
    """
    last = {"activity": object(), "since": time.monotonic(), "state": None}

    def timeout_message():
        return "timed out %s" % what

    for elapsed in iterate(timeout, timeout_message, interval, max_interval,
                           backoff, cancel):
        state = poll()
        last["state"] = state
        if progress:
            progress(state, elapsed)
        if done(state):
            return state
        reason = failed(state) if failed else None
        if reason:
            raise errors.WaitFailed("%s: %s" % (what, reason))
        if activity and inactivity:
            now = time.monotonic()
            current = activity(state)
            if current != last["activity"]:
                last["activity"], last["since"] = current, now
            elif now - last["since"] > inactivity:
                raise errors.WaitTimeout("%s: no activity for %d s"
                                         % (what, inactivity))


#: Waits on image bytes (snapshot, upload, conversion) may take ``base``
#: seconds plus this many per GiB (about 8.5 MiB/s) unless told otherwise.
SECONDS_PER_GIB = 120
GiB = 1024 ** 3


def for_size(size, base, per_gib=SECONDS_PER_GIB):
    """Seconds a wait on ``size`` bytes may take: ``base`` plus ``per_gib``
    for each GiB begun."""
    return base + per_gib * -(-max(0, size) // GiB)


def describe(timeout, size):
    """The activity line's note on a wait scaled by :func:`for_size`:
    " (up to 14 min for 20 GiB)"."""
    return " (up to %d min for %s GiB)" % (-(-timeout // 60),
                                           "%.3g" % (size / GiB))

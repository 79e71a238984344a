"""Polling in functional tests."""
import time

import pytest


def wait_for(predicate, timeout, what, interval=1.0):
    """Poll predicate until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)

"""Waiting in functional tests: every wait goes through these two helpers,
which retry what the product's own waits retry."""
import paramiko
import pytest

from novaimagebuilder import errors
from novaimagebuilder import ssh
from novaimagebuilder import waiter


def wait_for(predicate, timeout, what, interval=1.0):
    """Poll predicate until it returns a true value; fail after timeout."""
    try:
        for _ in waiter.iterate(timeout, "waiting for %s" % what,
                                interval=interval, max_interval=interval):
            value = predicate()
            if value:
                return value
    except errors.WaitTimeout as exc:
        pytest.fail("timed out: %s" % exc, pytrace=False)


def ssh_login(host, port, user, key, timeout, alive=None):
    """A paramiko client logged in to a booting guest as ``user``.

    Attempts fail over to the next one on what ``novaimagebuilder.ssh``
    retries; ``alive()`` (e.g. "QEMU still runs") is asserted between them.
    """
    def attempt():
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host, port=port, username=user, pkey=key,
                           timeout=10, banner_timeout=30, auth_timeout=30,
                           allow_agent=False, look_for_keys=False)
            return client
        except ssh.RETRYABLE:
            client.close()
            if alive is not None:
                alive()
            return None
    return wait_for(attempt, timeout, "SSH as %s on %s:%d" % (user, host, port),
                    interval=2)

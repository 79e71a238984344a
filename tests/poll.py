"""Waiting in tests: every wait, unit or functional, goes through these
helpers, which pace and time out through the product's own
``waiter.iterate`` and retry what its SSH waits retry."""
import socket

import paramiko
import pytest

from novaimagebuilder import errors
from novaimagebuilder.guest import ssh_connection
from novaimagebuilder import waiter


def wait_for(predicate, timeout, what, interval=1.0):
    """Poll predicate until it returns a true value, and return that; fail
    the test after timeout. ``what`` (a str, or a callable returning one:
    e.g. the state seen last) names the wait in the failure."""
    def message():
        return "waiting for %s" % (what() if callable(what) else what)
    try:
        for _ in waiter.iterate(timeout, message, interval=interval,
                                max_interval=interval):
            value = predicate()
            if value:
                return value
    except errors.WaitTimeout as exc:
        pytest.fail("timed out: %s" % exc, pytrace=False)


def ssh_banner(host, port, timeout, process, log_path):
    """Wait until ``process``, an sshd logging to ``log_path``, sends its
    banner on host:port; fail with its log if it exits or never does."""
    def log():
        with open(log_path, errors="replace") as stream:
            return stream.read()

    def attempt():
        assert process.poll() is None, "sshd exited: " + log()
        try:
            with socket.create_connection((host, port), 1) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False
    wait_for(attempt, timeout, lambda: "an SSH banner on %s:%d; sshd's log: %s"
             % (host, port, log()), interval=0.1)


def ssh_login(host, port, user, key, timeout, alive=None):
    """A paramiko client logged in to a booting guest as ``user``.

    Attempts fail over to the next one on what ``novaimagebuilder.guest.ssh``
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
        except ssh_connection.RETRYABLE:
            client.close()
            if alive is not None:
                alive()
            return None
    return wait_for(attempt, timeout, "SSH as %s on %s:%d" % (user, host, port),
                    interval=2)

"""SSHGuest against a real sshd on loopback, and the console key parser."""

import logging
import os
import socket
import subprocess
import threading
import time

import paramiko
import pytest

from novaimagebuilder import errors
from novaimagebuilder.guest import host_key_check
from novaimagebuilder.guest import ssh
from novaimagebuilder.guest import ssh_errors
from tests.unit import sshd

# The real sshd (module scoped) and a key it accepts for root.
sshd_server = sshd.sshd_server
client_key = sshd.client_key

# Privileged commands get this prefix: the variable shows they got it.
PREFIX = "env IMGFAC_PRIVILEGED=yes"


@pytest.fixture
def guest(sshd_server, client_key, caplog):
    caplog.set_level(logging.INFO)
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                           command_prefix=PREFIX, key_grace=0,
                           log=logging.getLogger("test.build"))
    session.wait_until_reachable(10)
    yield session
    session.close()


def console_fingerprint(path):
    """The fingerprint line as ssh-keygen (and cloud-init) prints it."""
    return subprocess.run(["ssh-keygen", "-l", "-f", path], check=True,
                          capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- commands

def test_run_returns_status_and_merged_output(guest):
    status, output = guest.run("echo out; echo err >&2; exit 3", check=False)
    assert status == 3
    assert output == "out\nerr\n"


def test_stderr_can_be_kept_out_of_the_output(guest, caplog):
    status, output = guest.run("echo out; echo warning >&2; echo more",
                               merge_stderr=False, name="query")
    assert (status, output) == (0, "out\nmore\n")
    assert "[query] stderr: warning" in caplog.text


def test_stderr_is_in_the_failure_when_kept_apart(guest):
    with pytest.raises(ssh_errors.CommandFailed, match="status 2: error: broken"):
        guest.run("echo fine; echo 'error: broken' >&2; exit 2",
                  merge_stderr=False)


def test_commands_read_an_empty_stdin(guest):
    assert guest.run("cat; read answer || echo no-input", timeout=10)[1] == (
        "no-input\n")


def test_privileged_commands_get_the_prefix(guest):
    assert guest.run("echo ${IMGFAC_PRIVILEGED:-no}")[1] == "yes\n"
    assert guest.run("echo ${IMGFAC_PRIVILEGED:-no}",
                     privileged=False)[1] == "no\n"


def test_privileged_command_keeps_shell_syntax(guest, tmp_path):
    target = tmp_path / "out"
    guest.run(f"echo a | tr a b > {target} && echo $IMGFAC_PRIVILEGED >> {target}")
    assert target.read_text() == "b\nyes\n"


def test_output_lines_are_logged_as_they_arrive(guest, caplog):
    seen = []

    class Recorder(logging.Handler):
        def emit(self, record):
            seen.append((time.monotonic(), record.getMessage()))

    handler = Recorder()
    logging.getLogger("test.build").addHandler(handler)
    try:
        guest.run("echo first; sleep 4; echo second", name="slow",
                  privileged=False)
    finally:
        logging.getLogger("test.build").removeHandler(handler)
    first = next(t for t, m in seen if m == "[slow] first")
    second = next(t for t, m in seen if m == "[slow] second")
    # logged as it came, 4 s before the command finished (not at its end;
    # no bound on the start, which a loaded machine can delay)
    assert second - first >= 3.0


def test_failing_command_message_is_one_line(guest):
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        guest.run("echo Reading package lists...; "
                  "echo 'E: Unable to locate package nosuchpkg' >&2; "
                  "echo done; exit 100", name="install packages")
    assert str(failure.value) == ("command 'install packages' exited with "
                                  "status 100: E: Unable to locate package "
                                  "nosuchpkg")
    assert failure.value.status == 100
    assert failure.value.last_lines[-1] == "done"
    assert isinstance(failure.value, errors.BuildError)


def test_failing_command_without_error_line_names_last_line(guest):
    with pytest.raises(ssh_errors.CommandFailed) as failure:
        guest.run("seq 1 50; exit 7", name="count")
    assert str(failure.value) == "command 'count' exited with status 7: 50"
    assert len(failure.value.last_lines) == ssh.KEEP_LINES


def test_command_timeout(guest):
    started = time.monotonic()
    with pytest.raises(ssh_errors.CommandTimeout, match="command 'wait' did not "
                       "finish within 1 s"):
        guest.run("sleep 30", name="wait", timeout=1)
    assert time.monotonic() - started < 5


def test_cancelled_command_stops(sshd_server, client_key):
    stop = threading.Event()
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                           cancelled=stop.is_set, key_grace=0)
    threading.Timer(0.5, stop.set).start()
    with session, pytest.raises(errors.Cancelled):
        session.run("sleep 30")


# ---------------------------------------------------------------- files

def temporary_uploads():
    return {n for n in os.listdir("/tmp") if n.startswith(".imgfac-")}


def test_put_privileged_creates_parents_and_mode(guest, tmp_path):
    before = temporary_uploads()
    target = tmp_path / "a" / "b" / "secret.conf"
    guest.put(b"key = value\n", str(target), 0o600)
    assert target.read_bytes() == b"key = value\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert temporary_uploads() == before


def test_put_unprivileged_writes_directly(guest, tmp_path):
    target = tmp_path / "plain"
    guest.put(bytes(range(256)), str(target), 0o640, privileged=False)
    assert target.read_bytes() == bytes(range(256))
    assert target.stat().st_mode & 0o777 == 0o640


def test_put_failure_is_a_command_failure(guest, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ssh_errors.CommandFailed, match=r"command 'install .*/file/"
                       r"below' exited with status 1"):
        guest.put(b"data", str(blocker / "below"), 0o644)


# ---------------------------------------------------------------- connecting

def test_unreachable_port_times_out_with_one_line(client_key):
    port = sshd.free_port()
    session = ssh.SSHGuest("127.0.0.1", port, "root", client_key)
    started = time.monotonic()
    with pytest.raises(ssh_errors.SSHTimeout) as failure:
        session.wait_until_reachable(1.5)
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert message.startswith(f"SSH on 127.0.0.1:{port} not reachable: "
                              "connection refused")
    assert "\n" not in message
    assert isinstance(failure.value, errors.WaitTimeout)


def test_server_closing_before_banner_is_retried_then_reported(client_key):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(ssh_errors.SSHTimeout, match=f"127.0.0.1:{port}"):
            ssh.SSHGuest("127.0.0.1", port, "root", client_key,
                         connect_timeout=1).wait_until_reachable(2)
    finally:
        listener.close()
    assert len(accepted) >= 2


def test_wait_until_reachable_waits_for_a_late_server(tmp_path, client_key):
    server = sshd.SSHServer(tmp_path)
    server.authorize(client_key)
    threading.Timer(1.0, server.start).start()
    try:
        session = ssh.SSHGuest("127.0.0.1", server.port, "root", client_key,
                               key_grace=0)
        with session.wait_until_reachable(20):
            assert session.run("echo up")[1] == "up\n"
    finally:
        time.sleep(0.1)
        server.stop()


def test_rejected_key_is_an_authentication_error(sshd_server):
    stranger = paramiko.ECDSAKey.generate()
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "debian", stranger,
                           key_grace=0)
    started = time.monotonic()
    with pytest.raises(ssh_errors.SSHAuthError) as failure:
        session.wait_until_reachable(30, auth_grace=1)
    assert time.monotonic() - started < 10
    assert str(failure.value) == (f"SSH authentication as 'debian' on "
                                  f"127.0.0.1:{sshd_server.port} failed")


def test_rejected_key_until_timeout_is_an_authentication_error(sshd_server):
    stranger = paramiko.ECDSAKey.generate()
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", stranger,
                           key_grace=0)
    with pytest.raises(ssh_errors.SSHAuthError, match="as 'root' on"):
        session.wait_until_reachable(1.5)


def test_cancelled_wait_stops(client_key):
    session = ssh.SSHGuest("127.0.0.1", sshd.free_port(), "root", client_key)
    with pytest.raises(errors.Cancelled):
        session.wait_until_reachable(30, cancelled=lambda: True)


# ---------------------------------------------------------------- host keys

def test_unknown_host_key_is_accepted_and_logged(guest, sshd_server, caplog):
    fingerprint = host_key_check.fingerprint(sshd_server.host_key)
    assert any(fingerprint in record.getMessage()
               for record in caplog.get_records("setup"))
    assert fingerprint in console_fingerprint(sshd_server.host_key_path)


def test_expected_key_from_console_fingerprints(sshd_server, client_key):
    console = ("[   4.2] cloud-init[512]: Generating keys\n"
               "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
               "ec2: " + console_fingerprint(sshd_server.host_key_path) + "\n"
               "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n")
    keys = host_key_check.host_keys_from_console(console)
    assert keys == [host_key_check.fingerprint(sshd_server.host_key)]
    with ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                      host_keys=keys) as session:
        assert session.wait_until_reachable(10).run("echo ok")[1] == "ok\n"


def test_expected_key_from_console_key_lines(sshd_server, client_key):
    with open(sshd_server.host_key_path + ".pub") as stream:
        public = stream.read().strip()
    console = ("-----BEGIN SSH HOST KEY KEYS-----\r\n"
               "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= root@x\r\n"
               f"{public}\r\n"
               "-----END SSH HOST KEY KEYS-----\r\n")
    keys = host_key_check.host_keys_from_console(console)
    assert keys[1] == " ".join(public.split()[:2])
    with ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                      host_keys=keys) as session:
        session.wait_until_reachable(10)


def test_host_key_mismatch_is_refused_at_once(sshd_server, client_key):
    other = "SHA256:" + "A" * 43
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                           host_keys=[other])
    started = time.monotonic()
    with pytest.raises(ssh_errors.HostKeyMismatch) as failure:
        session.wait_until_reachable(30)
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert message == (
        f"SSH host key of 127.0.0.1:{sshd_server.port} does not match the "
        f"expected keys: the server offered ssh-ed25519 "
        f"{host_key_check.fingerprint(sshd_server.host_key)}, expected {other}")


def test_console_parser_takes_the_last_block_and_md5():
    console = """
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:oldoldoldoldoldoldoldoldoldoldoldoldoldoldo root@a (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
rebooting
-----BEGIN SSH HOST KEY FINGERPRINTS-----
2048 AA:BB:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99 /etc/ssh/k.pub (RSA)
256 SHA256:newnewnewnewnewnewnewnewnewnewnewnewnewnewn root@a (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
not a key line
"""
    assert host_key_check.host_keys_from_console(console) == [
        "MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99",
        "SHA256:newnewnewnewnewnewnewnewnewnewnewnewnewnewn"]


def test_console_key_glued_to_the_end_marker():
    """Debian's cloud-init 22.4 as the test guest's console shows it: a key
    file without a final newline puts the END marker on the key's line."""
    key = ("AAAAC3NzaC1lZDI1NTE5AAAAIK7Yw3eeu2TppF36yCIWGgLH3rsO4KSwdB0wAzy"
           "Fi1wk")
    console = ("logger: socket /dev/log: No such file or directory\r\n"
               "-----BEGIN SSH HOST KEY KEYS-----\r\n"
               f"ssh-ed25519 {key}-----END SSH HOST KEY KEYS-----\r\n"
               "Cloud-init v. 22.4.2 finished at Mon, 07 Dec 2026\r\n")
    assert host_key_check.host_keys_from_console(console) == [f"ssh-ed25519 {key}"]


def test_console_without_markers_has_no_keys():
    assert host_key_check.host_keys_from_console(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 root@x\nlogin: ") == []


def test_bad_expected_key_is_refused(client_key):
    with pytest.raises(ValueError, match="not an SSH host key"):
        ssh.SSHGuest("127.0.0.1", 22, "root", client_key,
                     host_keys=["hello"])


# ---------------------------------------------------------------- lost sessions

# Stands in for "poweroff": kills this SSH session's sshd, as a guest going
# down would end the connection.
FAKE_POWEROFF = """#!/bin/sh
pid=$$
while [ "$pid" -gt 1 ]; do
    pid=$(cut -d' ' -f4 /proc/$pid/stat)
    if [ "$(cat /proc/$pid/comm)" = sshd ]; then kill -9 "$pid"; exit 0; fi
done
exit 1
"""


@pytest.fixture
def dropping_guest(sshd_server, client_key, tmp_path):
    (tmp_path / "poweroff").write_text(FAKE_POWEROFF)
    (tmp_path / "poweroff").chmod(0o755)
    session = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                           command_prefix=f"env PATH={tmp_path}:/usr/bin:/bin",
                           key_grace=0)
    session.wait_until_reachable(10)
    yield session
    session.close()


def test_lost_connection_fails_a_checked_command(dropping_guest):
    with pytest.raises(ssh_errors.SSHError, match="SSH connection to 127.0.0.1:"
                       r"\d+ ended while running command 'poweroff'"):
        dropping_guest.run("poweroff")


def test_lost_connection_without_check_is_status_minus_one(dropping_guest):
    assert dropping_guest.run("poweroff", check=False)[0] == -1
    # The next command opens a new connection.
    assert dropping_guest.run("echo again")[1] == "again\n"


def test_poweroff_ends_the_session(dropping_guest):
    started = time.monotonic()
    dropping_guest.poweroff(timeout=10)
    assert time.monotonic() - started < 5
    assert dropping_guest._client is None

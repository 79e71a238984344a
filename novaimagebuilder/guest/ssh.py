"""SSH access to a booted guest: run commands, upload files (paramiko).

``SSHGuest`` logs in with a private key held in memory (never written to
disk, logs or command lines), puts ``command_prefix`` (e.g. ``sudo``) in
front of privileged commands, streams command output line by line to a
logger and turns failures into one-line exceptions (:mod:`ssh_errors`).
The connection itself (host keys, jump host, waiting, reconnecting,
forwards) is :class:`ssh_connection.SSHConnection`'s.
"""

import codecs
import secrets
import shlex
import socket
import time

import paramiko

from novaimagebuilder import errors
from novaimagebuilder.guest import ssh_connection
from novaimagebuilder.guest import ssh_errors

#: How many output lines a CommandFailed keeps.
KEEP_LINES = 20


class SSHGuest(ssh_connection.SSHConnection):
    """A guest reached over SSH (see :class:`ssh_connection.SSHConnection`
    for the connection's arguments).

    ``command_prefix`` (e.g. "sudo" or "sudo -n") goes in front of
    privileged commands; empty when ``username`` is root. ``log`` also
    receives command output; when ``cancelled()`` returns true, commands
    stop with errors.Cancelled too.
    """

    def __init__(self, host, port, username, pkey, command_prefix="",
                 **connection):
        super().__init__(host, port, username, pkey, **connection)
        self.command_prefix = (command_prefix or "").strip()

    def _check_cancelled(self):
        if self._cancelled is not None and self._cancelled():
            raise errors.Cancelled()

    # -- commands

    def command_line(self, command, privileged=True, merge_stderr=True):
        """The command line sent for ``command``: run by sh, behind the
        prefix when privileged, with stderr sent to stdout when merged (so
        the two keep their order)."""
        script = f"exec 2>&1; {command}" if merge_stderr else command
        line = f"sh -c {shlex.quote(script)}"
        if privileged and self.command_prefix:
            return f"{self.command_prefix} {line}"
        return line

    def run(self, command, privileged=True, check=True, timeout=None,
            name=None, merge_stderr=True):
        """Run a shell command in the guest; returns (exit_status, output).

        Output is stdout and stderr merged in order, or stdout alone when
        ``merge_stderr`` is false (stderr is then logged only). Each line
        goes to the log as it arrives. ``name`` labels the command in
        messages (default: the command itself, shortened). With ``check``,
        a non-zero exit raises CommandFailed, and a connection lost before
        the exit status SSHError (without ``check`` the status is then -1).
        ``timeout`` (seconds) bounds the whole command (CommandTimeout).
        """
        name = name or _shorten(command)
        self.logger.info("Running %s", _quoted(name))
        stdout, stderr = _Lines(self, name), _Lines(self, name, "stderr: ")
        channel = self._transport().open_session()
        try:
            channel.settimeout(0.5)
            channel.exec_command(
                self.command_line(command, privileged, merge_stderr))
            channel.shutdown_write()        # stdin: end of file, no prompts
            self._stream(channel, stdout, stderr, name, timeout)
            status = channel.recv_exit_status()
            stderr.feed(_drain_stderr(channel))
        finally:
            channel.close()
        output, errors_text = stdout.finish(), stderr.finish()
        if status == -1:                    # no exit status: connection gone
            if check:
                raise ssh_errors.SSHError(
                    f"SSH connection to {self.address} ended while running "
                    f"{_quoted(name)}")
            self.logger.info("SSH connection to %s ended while running %s",
                             self.address, _quoted(name))
            return status, output
        if status != 0:
            self.logger.info("%s exited with status %d", _quoted(name), status)
            if check:
                lines = (output + errors_text).splitlines()
                raise ssh_errors.CommandFailed(name, status,
                                               lines[-KEEP_LINES:])
        return status, output

    def _stream(self, channel, stdout, stderr, name, timeout):
        """Feed a channel's output to the line loggers until it ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stderr.feed(_drain_stderr(channel))
            try:
                data = channel.recv(32768)
            except socket.timeout:
                data = None
            if data == b"":
                return                      # end of output
            stdout.feed(data)
            if deadline is not None and time.monotonic() > deadline:
                raise ssh_errors.CommandTimeout(
                    f"command {_quoted(name)} did not finish within "
                    f"{timeout:g} s")
            self._check_cancelled()

    def poweroff(self, timeout=30):
        """Ask the guest to power off; the connection ends with it.

        Returns without waiting for the machine to stop (watch it from the
        outside); a command that outlives ``timeout`` is left behind.
        """
        try:
            self.run("poweroff", check=False, timeout=timeout, name="poweroff")
        except ssh_errors.CommandTimeout:
            self.logger.info("poweroff did not end the SSH session within "
                             "%g s", timeout)
        finally:
            self.close()

    # -- files

    def put(self, data, path, mode=0o644, privileged=True):
        """Write ``data`` (bytes) to ``path`` in the guest with ``mode``.

        Privileged: uploaded by SFTP to a fresh temporary file, then
        installed with the command prefix (parent directories created,
        owned by the privileged user). Otherwise written directly by SFTP
        as the login user.
        """
        target = f"/tmp/.imgfac-{secrets.token_hex(8)}" if privileged else path
        sftp = paramiko.SFTPClient.from_transport(self._transport())
        try:
            with sftp.open(target, "wx" if privileged else "w") as stream:
                stream.write(data)
            sftp.chmod(target, mode)
        finally:
            sftp.close()
        if privileged:
            self.run(f"install -D -m {mode:04o} {shlex.quote(target)} "
                     f"{shlex.quote(path)}; status=$?; "
                     f"rm -f {shlex.quote(target)}; exit $status",
                     name=f"install {path}")
        self.logger.info("Wrote %s (%d bytes, mode %04o)", path, len(data), mode)


class _Lines:
    """Collects a command's output and logs it line by line."""

    def __init__(self, guest, name, label=""):
        self.guest, self.name, self.label = guest, name, label
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.text = []

    def feed(self, data):
        if not data:
            return
        self.pending += self.decoder.decode(data)
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._log(line)
            self.text.append(line + "\n")

    def finish(self):
        self.pending += self.decoder.decode(b"", final=True)
        if self.pending:
            self._log(self.pending)
            self.text.append(self.pending)
            self.pending = ""
        return "".join(self.text)

    def _log(self, line):
        shown = line.rstrip("\r").rsplit("\r", 1)[-1]   # last progress update
        self.guest.logger.info("[%s] %s%s", self.name, self.label, shown)


def _drain_stderr(channel):
    chunks = []
    while channel.recv_stderr_ready():
        chunks.append(channel.recv_stderr(32768))
    return b"".join(chunks)


def _shorten(command, width=60):
    text = " ".join(command.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _quoted(name):
    return f"command '{name}'"

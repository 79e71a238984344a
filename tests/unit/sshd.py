"""A real OpenSSH server on loopback for tests (needs root and sshd).

``SSHServer`` runs /usr/sbin/sshd in the foreground with its own
configuration, host key, authorized_keys file and PID file in a temporary
directory, listening on 127.0.0.1 on a free port. ``sshd_server`` is a
pytest fixture around it; import it into a test module to use it.
"""

import os
import shutil
import socket
import subprocess

import paramiko
import pytest

from tests import poll

SSHD = "/usr/sbin/sshd"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SSHServer:
    """sshd on 127.0.0.1:``port``, configured entirely under ``directory``."""

    def __init__(self, directory, host_key=None):
        """``host_key``: the server's private host key (OpenSSH text);
        default: a new Ed25519 key made by ssh-keygen."""
        self.directory = str(directory)
        self._given_host_key = host_key
        self.port = free_port()
        self.host_key_path = os.path.join(self.directory, "host_ed25519")
        self.authorized_keys = os.path.join(self.directory, "authorized_keys")
        self.log_path = os.path.join(self.directory, "sshd.log")
        self.process = None

    @property
    def host_key(self):
        """The server's public host key (a paramiko key)."""
        return paramiko.Ed25519Key(filename=self.host_key_path)

    def authorize(self, pkey):
        """Allow logins with the private key ``pkey``."""
        with open(self.authorized_keys, "a") as stream:
            stream.write(f"{pkey.get_name()} {pkey.get_base64()} test\n")

    def start(self):
        if not os.path.exists(SSHD):
            subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"],
                           check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ,
                                    DEBIAN_FRONTEND="noninteractive"))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # privsep dir
        if self._given_host_key is None:
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-C", "test-host", "-f", self.host_key_path],
                           check=True, stdin=subprocess.DEVNULL)
        else:
            with open(os.open(self.host_key_path, os.O_WRONLY | os.O_CREAT,
                              0o600), "w") as stream:
                stream.write(self._given_host_key)
        open(self.authorized_keys, "a").close()
        config = os.path.join(self.directory, "sshd_config")
        with open(config, "w") as stream:
            stream.write(
                f"ListenAddress 127.0.0.1:{self.port}\n"
                f"HostKey {self.host_key_path}\n"
                f"AuthorizedKeysFile {self.authorized_keys}\n"
                f"PidFile {os.path.join(self.directory, 'sshd.pid')}\n"
                "PermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                "StrictModes no\n"
                "Subsystem sftp internal-sftp\n"
                "LogLevel VERBOSE\n")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", config], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)
        try:
            poll.ssh_banner("127.0.0.1", self.port, 10, self.process,
                            self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory):
    """A running SSHServer; stopped after the module's tests."""
    if os.geteuid() != 0:
        pytest.fail("the sshd fixture needs root (it logs in as root)")
    directory = tmp_path_factory.mktemp("sshd")
    server = SSHServer(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def client_key(sshd_server):
    """A fresh private key that sshd_server accepts for root."""
    key = paramiko.ECDSAKey.generate()
    sshd_server.authorize(key)
    return key

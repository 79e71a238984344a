"""A Redis server of the tests' own (Debian's redis-server, as
tools/install-deps installs it): its own directory and loopback port, no
persistence, up in a fraction of a second."""
import socket
import subprocess

import pytest

from tests import poll
from tests.functional.zookeeper import _free_port


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


class Redis:
    def __init__(self, directory):
        self.directory = str(directory)
        self.port = _free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.directory, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            assert self.process.poll() is None, "redis-server exited"
            return _answers(self.port)
        poll.wait_for(up, 30, "Redis on port %d" % self.port, interval=0.05)
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A Redis server of the test module's own."""
    server = Redis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()

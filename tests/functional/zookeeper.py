"""A ZooKeeper server of the tests' own (Debian's zookeeperd jars, as
tools/install-deps installs them): its own data directory and loopback
port, up in a second or two, stopped and started again at will."""
import os
import socket
import subprocess

import pytest

from tests import poll

CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port):
    """Whether the server answers 'ruok' with 'imok'."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


class ZooKeeper:
    """One standalone server; ``url`` is a [jobboard] backend_url."""

    def __init__(self, directory, tick_ms=500):
        self.directory = str(directory)
        self.port = _free_port()
        self.config = os.path.join(self.directory, "zoo.cfg")
        os.makedirs(os.path.join(self.directory, "data"), exist_ok=True)
        with open(self.config, "w") as handle:
            # Sessions of 1 to 20 ticks; 'ruok' tells the tests it is up.
            handle.write("tickTime=%d\ndataDir=%s\nclientPort=%d\n"
                         "clientPortAddress=127.0.0.1\n"
                         "admin.enableServer=false\n"
                         "4lw.commands.whitelist=ruok,srvr\n"
                         "minSessionTimeout=%d\n" % (
                             tick_ms, os.path.join(self.directory, "data"),
                             self.port, tick_ms * 2))
        self.url = "zookeeper://127.0.0.1:%d/imgfac-nova-tests" % self.port
        self.process = None

    def start(self):
        log = open(os.path.join(self.directory, "zookeeper.log"), "ab")
        self.process = subprocess.Popen(
            ["java", "-Xmx128m", "-cp", CLASSPATH, MAIN, self.config],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up():
            assert self.process.poll() is None, "ZooKeeper exited: " + \
                open(os.path.join(self.directory, "zookeeper.log")).read()
            return _answers(self.port)
        poll.wait_for(up, 60, "ZooKeeper on port %d" % self.port,
                      interval=0.1)
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


@pytest.fixture(scope="module")
def zk(tmp_path_factory):
    """A ZooKeeper server of the test module's own."""
    server = ZooKeeper(tmp_path_factory.mktemp("zookeeper"))
    yield server.start()
    server.stop()

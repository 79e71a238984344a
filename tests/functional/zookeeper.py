"""A ZooKeeper server of the tests' own (Debian's zookeeperd jars, as
tools/install-deps installs them), up in a second or two."""
import os

import pytest

from tests.functional import servers

CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


class ZooKeeper(servers.Server):
    """One standalone server; ``url`` is a [jobboard] backend_url."""

    name, question, answer = "zookeeper", b"ruok", b"imok"
    start_timeout = 60

    def __init__(self, directory, tick_ms=500):
        super().__init__(directory)
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

    def command(self):
        return ["java", "-Xmx128m", "-cp", CLASSPATH, MAIN, self.config]


@pytest.fixture(scope="module")
def zk(tmp_path_factory):
    """A ZooKeeper server of the test module's own."""
    yield from servers.serve(ZooKeeper, tmp_path_factory)

"""A Redis server of the tests' own (Debian's redis-server, as
tools/install-deps installs it): no persistence, up in a fraction of a
second."""
import pytest

from tests.functional import servers


class Redis(servers.Server):
    name, question, answer = "redis", b"PING\r\n", b"+PONG\r\n"

    def __init__(self, directory):
        super().__init__(directory)
        self.url = "redis://127.0.0.1:%d/0" % self.port

    def command(self):
        return ["redis-server", "--port", str(self.port), "--bind",
                "127.0.0.1", "--dir", self.directory, "--save", "",
                "--appendonly", "no"]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A Redis server of the test module's own."""
    yield from servers.serve(Redis, tmp_path_factory)

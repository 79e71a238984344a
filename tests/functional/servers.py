"""Servers of the tests' own (the jobboards' ZooKeeper and Redis): each in
its own directory on a free loopback port, started, asked until it
answers, stopped and started again at will."""
import os
import socket
import subprocess

from tests import poll


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process; a subclass gives its :meth:`command`, the
    four bytes or line it is asked (``question``) and its ``answer``."""

    name = question = answer = None
    #: Seconds it may take to answer after its start.
    start_timeout = 30

    def __init__(self, directory):
        self.directory = str(directory)
        self.port = free_port()
        self.log = os.path.join(self.directory, "%s.log" % self.name)
        self.process = None

    def command(self):
        raise NotImplementedError

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.sendall(self.question)
                return s.recv(16) == self.answer
        except OSError:
            return False

    def start(self):
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log,
                                            stderr=subprocess.STDOUT)

        def up():
            assert self.process.poll() is None, "%s exited: %s" % (
                self.name, open(self.log).read()[-2000:])
            return self.answers()
        poll.wait_for(up, self.start_timeout, "%s on port %d" % (
            self.name, self.port), interval=0.05)
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


def serve(server_class, tmp_path_factory):
    """Start a ``server_class`` of the test module's own, stopped at the
    end (the body of a module-scoped fixture)."""
    server = server_class(tmp_path_factory.mktemp(server_class.name))
    yield server.start()
    server.stop()

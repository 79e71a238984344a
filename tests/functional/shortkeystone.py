"""A second Keystone of the test cloud whose tokens live briefly, for the
tests of builds that outlive their token.

It is the test cloud's own Keystone code and configuration (same
database, same fernet keys: its tokens are valid everywhere in the test
cloud, and validated by the test cloud's Keystone as usual) with one more
configuration file, ``[token] expiration``, on a port of its own: the
shared Keystone on 5000 is left as it is. Keystone has no per-project or
per-user token lifetime, so a second process is the way to shorten it for
one test only.
"""
import os
import socket
import subprocess

import pytest
import requests

from tests import poll

TEST_CLOUD = os.environ.get("IMGFAC_TEST_CLOUD_DIR",
                            "/var/lib/imgfac-nova/test-cloud")
#: Seconds a token of the short Keystone lives.
LIFETIME = 15


class ShortKeystone:
    def __init__(self, directory, lifetime=LIFETIME):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lifetime = lifetime
        self.log = os.path.join(str(directory), "keystone.log")
        self.extra = os.path.join(str(directory), "short-tokens.conf")
        with open(self.extra, "w") as handle:
            handle.write("[token]\nexpiration = %d\n" % lifetime)
        self.proc = None

    def start(self):
        venv = os.path.join(TEST_CLOUD, "venv")
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES="%s;%s" % (
            os.path.join(TEST_CLOUD, "etc", "keystone", "keystone.conf"),
            self.extra))
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [os.path.join(venv, "bin", "uwsgi"),
                 "--http-socket", "127.0.0.1:%d" % self.port,
                 "--module", "keystone.wsgi.api:application", "--home", venv,
                 "--master", "--processes", "1", "--threads", "4",
                 "--enable-threads", "--lazy-apps", "--die-on-term",
                 "--need-app", "--buffer-size", "65535",
                 # as the test cloud's: uwsgi's http-socket does not keep
                 # connections alive, so the clients must not reuse them
                 "--add-header", "Connection: close"],
                env=env, stdout=log, stderr=subprocess.STDOUT)

        def answers():
            assert self.proc.poll() is None, self.read_log()[-3000:]
            try:  # its first request loads Keystone: seconds, more when busy
                return requests.get(self.url + "/v3",
                                    timeout=60).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False
        poll.wait_for(answers, 120, "the short-token Keystone to answer",
                      0.2)
        return self

    def read_log(self):
        with open(self.log) as handle:
            return handle.read()

    def logins(self):
        """How many tokens it has issued (its uwsgi request log)."""
        return self.read_log().count("POST /v3/auth/tokens =>")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


@pytest.fixture(scope="module")
def short_keystone(test_cloud, tmp_path_factory):
    keystone = ShortKeystone(tmp_path_factory.mktemp("short-keystone"))
    try:
        yield keystone.start()
    finally:
        keystone.stop()

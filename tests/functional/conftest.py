"""Functional tests run against the real test cloud on loopback.

The session fixture brings the cloud up with ``tools/test-cloud up``
(idempotent: seconds when it already runs) and fails -- never skips --
with the tool's own error when the cloud cannot come up.
"""
import os
import subprocess
import uuid

import openstack
import openstack.config
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "test-cloud")


class TestCloud:
    """Where the running test cloud is and how to reach it."""

    def __init__(self, exports):
        self.clouds_yaml = exports["OS_CLIENT_CONFIG_FILE"]
        self.cloud = exports["OS_CLOUD"]
        self.state_dir = os.path.dirname(self.clouds_yaml)
        self.exports = exports

    def connect(self, cloud):
        config = openstack.config.OpenStackConfig(
            config_files=[self.clouds_yaml], load_envvars=False)
        return openstack.connection.Connection(
            config=config.get_one(cloud=cloud))


def run_tool(*args, timeout=3600):
    return subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def test_cloud():
    up = run_tool("up")
    if up.returncode:
        pytest.fail("tools/test-cloud up failed (exit %d):\n%s"
                    % (up.returncode, up.stderr[-6000:]), pytrace=False)
    env = run_tool("env")
    assert env.returncode == 0, env.stderr
    exports = {}
    for line in env.stdout.splitlines():
        name, _, value = line.replace("export ", "", 1).partition("=")
        exports[name] = value
    return TestCloud(exports)


@pytest.fixture(scope="session")
def conn(test_cloud):
    """openstacksdk connection as the non-admin user `imgfac` (project imgfac)."""
    connection = test_cloud.connect("imgfac-test")
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def admin_conn(test_cloud):
    connection = test_cloud.connect("imgfac-test-admin")
    yield connection
    connection.close()


@pytest.fixture
def cleanup():
    """A stack of undo callables, run in reverse after the test."""
    stack = []
    yield stack
    for undo in reversed(stack):
        try:
            undo()
        except openstack.exceptions.NotFoundException:
            pass


@pytest.fixture
def unique_name():
    return "imgfac-ft-" + uuid.uuid4().hex[:8]


@pytest.fixture
def setup(tmp_path):
    """A configuration file and image store for imgfac-nova builds:
    ``(config path, store path, tmp_path)``."""
    from tests.functional import builds
    config, store = builds.write_config(tmp_path)
    return config, store, tmp_path

"""Functional tests run against the real test cloud on loopback.

The session fixture brings the cloud up with ``tools/test-cloud up``
(idempotent: seconds when it already runs) and fails -- never skips --
with the tool's own error when the cloud cannot come up.
"""
import dataclasses
import fcntl
import os
import subprocess
import tempfile
import time
import uuid

import openstack
import openstack.config
import pytest

from tests.functional.apidaemon import clouds  # noqa: F401 (fixtures)
from tests.functional.apidaemon import daemon_env  # noqa: F401
from tests.functional.apidaemon import make_daemon  # noqa: F401
from tests.functional.apidaemon import plugin_path  # noqa: F401
from tests.functional.apidaemon import service_user  # noqa: F401
from tests.functional.apidaemon import tokens  # noqa: F401
from tests.functional import databases

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


#: Held shared by every functional test and exclusively by one marked
#: ``exclusive``, so that one runs while no other does on this machine
#: (other workers, other runs). The turnstile is taken first by both, and
#: kept by an exclusive test while it waits, so it is not starved.
MACHINE_LOCK = os.path.join(tempfile.gettempdir(), "imgfac-nova-tests.lock")


@pytest.fixture(autouse=True)
def machine_turn(request):
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with open(MACHINE_LOCK + ".turnstile", "a") as turnstile, \
            open(MACHINE_LOCK, "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


#: Modules that change or run the test cloud's own virtualenv (one
#: reinstalls a package of it): never beside each other.
_VENV_MODULES = ("test_cloud_tool", "test_cloud_services")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Worker groups for ``pytest -n 2 --dist loadgroup`` (tox): builds in
    the test cloud share the session's Nova base image and JEOS cache
    entries, local builds the local ones, so each kind runs on one worker
    (a session fixture is made once per worker; a test parametrized by
    ``backend`` goes with that backend's builds); the other tests of a
    module stay together for its module fixtures (one guest, one ISO). A
    test that asks for a base at run time marks its group itself."""
    for item in items:
        if not item.nodeid.startswith("tests/functional/") or \
                item.get_closest_marker("xdist_group"):
            continue
        names = set(item.fixturenames)
        module = item.module.__name__.rpartition(".")[2]
        backend = getattr(item, "callspec", None) and \
            item.callspec.params.get("backend")
        if names & {"nova_base_image", "cloud_env"} or backend == "nova":
            group = "nova-builds"
        elif names & {"local_base_image", "local_env"} or \
                backend == "local":
            group = "local-builds"
        elif module in _VENV_MODULES:
            group = "test-cloud-venv"
        else:
            group = module
        item.add_marker(pytest.mark.xdist_group(group))


def run_tool(*args, timeout=3600):
    return subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def pytest_configure(config):
    if databases.backend() not in databases.BACKENDS:
        raise pytest.UsageError("%s=%s: not one of %s" % (
            databases.VARIABLE, databases.backend(),
            ", ".join(databases.BACKENDS)))


@pytest.fixture(scope="session", autouse=True)
def records_database(request):
    """With ``IMGFAC_TEST_DATABASE=mariadb``, the stores' records in the
    test cloud's MariaDB (see tests/functional/databases.py); their
    databases are dropped at the end, and those of dead sessions at the
    start."""
    if databases.backend() == "sqlite":
        yield
        return
    cloud = request.getfixturevalue("test_cloud")
    databases.socket = os.path.join(cloud.state_dir, "run", "mysqld.sock")
    databases.drop_stale()
    yield
    databases.drop_all()


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


@pytest.fixture(scope="session")
def rbd(test_cloud):
    """The `rbd` command on the test cloud's Ceph: ``rbd("ls", "volumes")``
    gives its stdout (bytes); Cinder's volumes are the RBD images
    ``volumes/volume-<id>``."""
    conf = os.path.join(test_cloud.state_dir, "etc", "ceph", "ceph.conf")

    def run(*args):
        return subprocess.run(["rbd", "-c", conf] + list(args), check=True,
                              capture_output=True, timeout=120).stdout
    return run


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


@pytest.fixture(scope="session", autouse=True)
def jeos_cache(tmp_path_factory):
    """This session's local JEOS cache: a fresh directory. (Its Glance
    entries are its own by the template's root password, builds.ROOT_PASSWORD,
    and removed at the end by cloud_env.) So which build installs and which
    reuses is this session's doing."""
    from tests.functional import builds
    builds.JEOS_CACHE_DIR = str(tmp_path_factory.mktemp("jeos-cache"))
    yield builds.JEOS_CACHE_DIR
    builds.JEOS_CACHE_DIR = None


@pytest.fixture(scope="session")
def cloud_env(test_cloud, tmp_path_factory):
    """Environment of the imgfac-nova command for builds in the test cloud
    (the JEOS cache entries this session's builds stored in Glance are
    removed at its end)."""
    from tests.functional import builds
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(test_cloud.exports)
    env["PYTHONPATH"] = REPO
    yield env
    admin = test_cloud.connect("imgfac-test-admin")
    try:
        builds.remove_jeos_cache(admin, tmp_path_factory.getbasetemp())
    finally:
        admin.close()


@pytest.fixture(scope="session")
def local_env(test_cloud):
    """Environment of a user with no cloud configured (so: the local plugin);
    the test cloud serves the test installer and repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = REPO
    return env


@dataclasses.dataclass
class BaseImage:
    """A COMPLETE base image built once per session, for every test that
    needs one: its record, where it is stored, how long the build took."""

    record: dict
    config: str
    store: str
    env: dict
    seconds: float


def _base_image(tmp_path_factory, name, params, env):
    from tests.functional import builds
    tmp = tmp_path_factory.mktemp(name)
    config, store = builds.write_config(tmp)
    started = time.monotonic()
    result = builds.imgfac(config, "base_image",
                           *builds.with_install_script(params, tmp),
                           builds.write_template(tmp), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return BaseImage(builds.record(result), config, store, env,
                     time.monotonic() - started)


@pytest.fixture(scope="session")
def nova_base_image(tmp_path_factory, cloud_env, test_cloud):
    """The session's base image built in the test cloud (Nova plugin, with a
    floating IP); deleted, with its Glance image, at the end."""
    from tests.functional import builds
    image = _base_image(tmp_path_factory, "nova-base", builds.NOVA_PARAMS + (
        "--parameter", "request_floating_ip", "true"), cloud_env)
    yield image
    # Deleting a complete Nova image removes its Glance image (checked here,
    # at the end, since the image is shared).
    glance_id = image.record["properties"]["x-image-properties-glance_id"]
    conn = test_cloud.connect(test_cloud.cloud)
    try:
        builds.delete(image.config, image.record, cloud_env, conn)
        assert conn.image.find_image(glance_id) is None
    finally:
        conn.close()


@pytest.fixture(scope="session")
def local_base_image(tmp_path_factory, local_env):
    """The session's base image built locally with QEMU (a qcow2 file)."""
    from tests.functional import builds
    return _base_image(tmp_path_factory, "local-base", builds.LOCAL_PARAMS,
                       local_env)


@pytest.fixture
def setup(tmp_path):
    """A configuration file and image store for imgfac-nova builds:
    ``(config path, store path, tmp_path)``."""
    from tests.functional import builds
    config, store = builds.write_config(tmp_path)
    return config, store, tmp_path

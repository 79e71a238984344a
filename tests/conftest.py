"""What both tiers share: the test plugins on sys.path (one site a worker,
whichever tier asks first), and the wall time of each tier (unit,
functional), printed at the end of a run."""
import os
import sys
import time

import pytest

from tests import plugins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TIERS = {}  # tier -> [first start, last end]


def _tier(nodeid):
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def pytest_runtest_logstart(nodeid, location):
    _TIERS.setdefault(_tier(nodeid), [time.monotonic(), None])


def pytest_runtest_logfinish(nodeid, location):
    _TIERS[_tier(nodeid)][1] = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    if _TIERS:
        terminalreporter.write_line("wall time: " + ", ".join(
            "%s %.0f s" % (tier, end - start)
            for tier, (start, end) in _TIERS.items() if end))


@pytest.fixture(autouse=True)
def database_connections():
    """The databases a test used close their pooled connections when it
    ends (a process keeps a pool a database; a session opens hundreds)."""
    yield
    from imgfac_nova.db import api
    api.close_all()


@pytest.fixture(scope="session")
def _plugin_dir(tmp_path_factory):
    site = str(tmp_path_factory.mktemp("site"))
    plugins.install(site)
    return site


@pytest.fixture
def plugin_site(_plugin_dir):
    """A site directory declaring the test plugins (one a worker), on
    sys.path from the first test that asks for it to the worker's end."""
    if _plugin_dir not in sys.path:
        sys.path.insert(0, _plugin_dir)
    # stevedore's ExtensionManager keeps each namespace's entry points for
    # the life of the process: a test that loaded the plugins before any
    # test put this site on sys.path (an in-process PluginManager) would
    # hide the test plugins from every later test of the worker.
    from stevedore import extension
    cached = extension.ExtensionManager.ENTRY_POINT_CACHE
    for namespace, declared in plugins.ENTRY_POINTS.items():
        if not set(declared) <= {e.name for e in cached.get(namespace, ())}:
            cached.pop(namespace, None)
    return _plugin_dir


@pytest.fixture
def cli_env(plugin_site, tmp_path):
    """Environment for running the imgfac-nova command in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, REPO])
    return env

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
def plugin_site(tmp_path_factory):
    """A site directory declaring the test plugins, on sys.path."""
    site = plugins.install(str(tmp_path_factory.mktemp("site")))
    sys.path.insert(0, site)
    yield site
    sys.path.remove(site)


@pytest.fixture
def cli_env(plugin_site, tmp_path):
    """Environment for running the imgfac-nova command in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, REPO])
    return env

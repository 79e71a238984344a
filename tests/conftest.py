"""What both tiers share: the test plugins on sys.path (one site a worker,
whichever tier asks first), and the wall time of each tier (unit,
functional), printed at the end of a run."""
import importlib.metadata
import os
import sys
import tempfile
import time
import warnings

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
    from stevedore import _cache
    # stevedore keeps the entry points it found in memory and in a file per
    # sys.path (keyed by its entries' mtimes packed as 32-bit floats, which
    # cannot tell apart times minutes apart): a CI run once found the test
    # plugins missing from stevedore's view while Python saw them. This
    # worker's stevedore starts afresh, with a cache directory of its own.
    _cache._c._dir = str(tmp_path_factory.mktemp("entry-points"))
    _cache._c._internal.clear()
    return str(tmp_path_factory.mktemp("site"))


@pytest.fixture
def plugin_site(_plugin_dir):
    """A site directory declaring the test plugins (one a worker), on
    sys.path during the test. Its declaration is written again, and it is
    put back on sys.path, when something took them away since the last test
    (a CI run once lost them half-way); that is reported as a warning."""
    declared = os.path.join(_plugin_dir, plugins.DIST, "entry_points.txt")
    lost = [what for what, gone in (
        ("its declaration", not os.path.isfile(declared)),
        ("its place on sys.path", _plugin_dir not in sys.path)) if gone]
    if lost and _PLUGIN_SITES:
        warnings.warn("the test plugin site %s had lost %s: restored"
                      % (_plugin_dir, " and ".join(lost)))
    _PLUGIN_SITES.add(_plugin_dir)
    if not os.path.isfile(declared):
        plugins.install(_plugin_dir)
    if _plugin_dir not in sys.path:
        sys.path.insert(0, _plugin_dir)
    seen = importlib.metadata.entry_points(group="imgfac_nova.os_plugins")
    if "testos" not in {entry.name for entry in seen}:
        warnings.warn("Python does not see the test plugins declared in %s "
                      "(sys.path: %s)" % (_plugin_dir, sys.path))
    from stevedore import _cache
    if "testos" not in {entry.name for entry in _cache.get_group_all(
            "imgfac_nova.os_plugins")}:
        warnings.warn("stevedore's cache had lost the test plugins of %s: "
                      "cleared" % _plugin_dir)
        _cache._c._dir = tempfile.mkdtemp(prefix="entry-points-",
                                          dir=os.path.dirname(_plugin_dir))
        _cache._c._internal.clear()
    return _plugin_dir


#: Plugin sites made in this worker (see plugin_site).
_PLUGIN_SITES = set()


@pytest.fixture
def cli_env(plugin_site, tmp_path):
    """Environment for running the imgfac-nova command in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([plugin_site, REPO])
    return env

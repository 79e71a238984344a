import os
import sys

import pytest

from tests import plugins

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


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


@pytest.fixture
def config_file(tmp_path):
    """A configuration file pointing the store at a temporary directory."""
    config = tmp_path / "imgfac-nova.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\n" % (tmp_path / "store"))
    return str(config)

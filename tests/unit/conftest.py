import pytest


@pytest.fixture
def config_file(tmp_path):
    """A configuration file pointing the store at a temporary directory."""
    config = tmp_path / "imgfac-nova.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\n" % (tmp_path / "store"))
    return str(config)

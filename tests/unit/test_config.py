import logging
import os

import pytest

from imgfac_nova import config


def test_storage_path_option(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text("[DEFAULT]\nstorage_path = /srv/images\nos_plugin = nova\n")
    conf = config.load([str(path)])
    assert config.storage_path(conf) == "/srv/images"
    assert conf.os_plugin == "nova"


@pytest.mark.parametrize("debug,level", [(False, logging.CRITICAL),
                                         (True, logging.DEBUG)])
def test_paramiko_retry_noise_only_with_debug(debug, level):
    config.load([], debug=debug)
    assert logging.getLogger("paramiko.transport").getEffectiveLevel() == level


def test_list_opts_for_the_sample_generator():
    [(group, opts)] = config.list_opts()
    assert group == "DEFAULT"
    assert {o.name for o in opts} == {"storage_path", "media_cache_path",
                                      "os_plugin", "target_content_file",
                                      "max_template_bytes",
                                      "max_template_elements",
                                      "jeos_cache_path", "jeos_cache_max_age",
                                      "jeos_cache_max_entries",
                                      "cloud_request_timeout"}


def test_media_cache_path_option(tmp_path):
    from imgfac_nova.plugins import common

    path = tmp_path / "c.conf"
    path.write_text("[DEFAULT]\nmedia_cache_path = /srv/media\n")
    assert common.media_cache_dir(config.load([str(path)])) == "/srv/media"
    assert common.media_cache_dir(None) in (
        "/var/cache/imgfac-nova/media",
        os.path.join(os.path.expanduser("~"), ".cache", "imgfac-nova", "media"))

import logging
import os
import subprocess
import sys

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
                                      "cloud_request_timeout",
                                      "libvirt_uri", "libvirt_images_path",
                                      "resume_max_age"}


def test_media_cache_path_option(tmp_path):
    from imgfac_nova.plugins import common

    path = tmp_path / "c.conf"
    path.write_text("[DEFAULT]\nmedia_cache_path = /srv/media\n")
    assert common.media_cache_dir(config.load([str(path)])) == "/srv/media"
    assert common.media_cache_dir(None) in (
        "/var/cache/imgfac-nova/media",
        os.path.join(os.path.expanduser("~"), ".cache", "imgfac-nova", "media"))


def test_database_connection_defaults_to_sqlite_in_the_storage_path(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text("[DEFAULT]\nstorage_path = /srv/images\n")
    conf = config.load([str(path)])
    assert conf.database.connection == \
        "sqlite:////srv/images/imgfac-nova.sqlite"
    assert conf.database.max_retries == 0
    store = config.image_store(conf)
    assert (store.path, store.connection) == (
        "/srv/images", "sqlite:////srv/images/imgfac-nova.sqlite")
    path.write_text("[database]\nconnection = mysql+pymysql://u:p@db/imgfac\n"
                    "max_retries = 3\n")
    conf = config.load([str(path)])
    assert conf.database.connection == "mysql+pymysql://u:p@db/imgfac"
    assert config.image_store(conf).connection == conf.database.connection


def test_sample_generator_lists_the_database_options(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    sample = tmp_path / "sample.conf"
    subprocess.run(
        [sys.executable, "-m", "oslo_config.generator", "--config-file",
         os.path.join(repo, "etc", "imgfac-nova",
                      "imgfac-nova-config-generator.conf"),
         "--output-file", str(sample)], check=True, cwd=repo, timeout=120)
    text = sample.read_text()
    database = text[text.index("\n[database]\n"):]
    assert "\n#connection = sqlite:////var/lib/imgfac-nova/storage/" \
        "imgfac-nova.sqlite\n" in database
    assert "\n#max_retries = 0\n" in database

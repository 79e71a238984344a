"""Secrets stay secret: URL credentials scrubbed from logs, errors and
records, caches and build logs private, install scripts kept masked."""
import hashlib
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading

import pytest
from oslo_config import cfg
from oslo_log import formatters
from oslo_log import log as oslo_log

from imgfac_nova import build

from imgfac_nova import jobs
from imgfac_nova import images
from imgfac_nova import parameters
from imgfac_nova import store
from imgfac_nova import template as tdl
from imgfac_nova.plugins import common
from novaimagebuilder import errors
from novaimagebuilder.machines import local
from novaimagebuilder.installer import media
from novaimagebuilder import private
from novaimagebuilder import scrub

TEMPLATE = """<template>
  <name>scrubbed</name>
  <os>
    <name>TestOS</name><version>1</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>rootsecret</rootpw>
  </os>
</template>
"""

KICKSTART = """text
url --url=http://mirror:mirrorpw@mirror.example/os/
rootpw --plaintext secret
poweroff
"""


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- scrub

@pytest.mark.parametrize("text, scrubbed", [
    ("http://u:pw@h.example/x", "http://***@h.example/x"),
    ("fetching https://TOKEN@h.example:8443/a?b=c now",
     "fetching https://***@h.example:8443/a?b=c now"),
    ("ftp://u:p@ss@h.example/", "ftp://***@h.example/"),
    ('["http://a:b@h/", "x@y.example"]', '["http://***@h/", "x@y.example"]'),
    ("http://h.example/a@b, ssh fedora@host, mailto:x@y",
     "http://h.example/a@b, ssh fedora@host, mailto:x@y"),
    ("cannot download http://u:pw@h/x: HTTP 404\nhttps://v:pw2@h/",
     "cannot download http://***@h/x: HTTP 404\nhttps://***@h/"),
])
def test_scrub_removes_url_credentials_only(text, scrubbed):
    assert scrub.scrub(text) == scrubbed


def test_scrub_leaves_other_values():
    assert scrub.scrub(None) is None and scrub.scrub(5) == 5


def _oslo_formatter():
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    conf([])
    return formatters.ContextFormatter(config=conf)


def test_a_scrubbing_handler_hides_credentials_in_lines_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_oslo_formatter())
    scrub.install(scrub.install(handler))  # twice is once
    logger = logging.getLogger("test_secrets.scrubbed")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("Downloading %s", "http://u:argpw@h/x")
        try:
            raise errors.BuildError("cannot download http://u:excpw@h/x")
        except errors.BuildError:
            logger.error("Failed", exc_info=True)
            # oslo.log adds the exception being handled to a warning
            logger.warning("Failed again")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "http://***@h/x" in written and "BuildError" in written
    for secret in ("argpw", "excpw", "u:"):
        assert secret not in written
    assert isinstance(handler.formatter, scrub.ScrubbingFormatter)
    assert not isinstance(handler.formatter.formatter,
                          scrub.ScrubbingFormatter)


# ---------------------------------------------------------------- private files

def test_private_directory_tightens_what_existed_before(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    os.chmod(cache, 0o755)
    (cache / "old").write_text("x")
    os.chmod(cache / "old", 0o644)
    private.directory(str(cache))
    assert _mode(cache) == 0o700 and _mode(cache / "old") == 0o600
    fresh = tmp_path / "a" / "b"
    private.directory(str(fresh))
    assert _mode(fresh) == 0o700


def test_media_cache_is_private_and_its_index_keeps_no_password(tmp_path):
    path = tmp_path / "media"
    path.mkdir()
    os.chmod(path, 0o755)
    index = path / "urls.json"
    index.write_text(json.dumps({"http://u:oldpw@h/k": {"sha256": "1"}}))
    os.chmod(index, 0o644)
    cache = media.MediaCache(str(path))
    assert _mode(path) == 0o700 and _mode(index) == 0o600
    assert json.loads(index.read_text()) == {"http://***@h/k": {"sha256": "1"}}
    cache._remember("https://u:newpw@h/r", {"sha256": "2"})
    text = index.read_text()
    assert "newpw" not in text and "oldpw" not in text
    assert json.loads(text)["https://***@h/r"] == {"sha256": "2"}
    assert _mode(index) == 0o600


def test_local_jeos_cache_is_private(tmp_path):
    path = tmp_path / "jeos"
    path.mkdir()
    os.chmod(path, 0o755)
    (path / "old.qcow2").write_bytes(b"x")
    os.chmod(path / "old.qcow2", 0o644)
    cache = local.JeosCache(str(path))
    assert _mode(path) == 0o700 and _mode(path / "old.qcow2") == 0o600
    captured = tmp_path / "captured.qcow2"
    captured.write_bytes(b"disk")
    os.chmod(captured, 0o644)
    entry = cache.add(str(captured), "k" * 8, "name", "build")
    assert _mode(entry.id) == 0o600 and _mode(path / ("k" * 8 + ".json")) \
        == 0o600


# ---------------------------------------------------------------- records

@pytest.fixture
def builder(plugin_site, tmp_path):
    return build.Builder(None, store.ImageStore(str(tmp_path / "store")))


def _run(builder, values):
    job = builder.base_image(tdl.parse_template(TEMPLATE, "s.tdl"), values)
    assert job.wait(30)
    return builder.store.get(job.image.identifier)


def test_record_keeps_the_install_scripts_digest_and_masked_text(builder):
    record = _run(builder, {"install_script": KICKSTART, "size": "8"})
    assert record.status == images.COMPLETE
    kept = record.parameters["install_script"]
    assert kept["sha256"] == hashlib.sha256(KICKSTART.encode()).hexdigest()
    assert kept["masked"] == ("text\nurl --url=http://***@mirror.example/os/"
                              "\nrootpw --plaintext '***'\npoweroff\n")
    everything = json.dumps(record.to_dict())
    assert "secret" not in everything and "mirrorpw" not in everything
    with open(record.log) as handle:
        assert "secret" not in handle.read()
    assert _mode(record.log) == 0o600


def test_the_templates_root_password_is_masked_in_a_given_script(builder):
    script = ("rootpw --lock\n%post\necho 'root:rootsecret' | chpasswd\n"
              "echo rootsecrets stays\n%end\npoweroff\n")
    record = _run(builder, {"install_script": script, "size": "8"})
    assert record.parameters["install_script"]["masked"] == script.replace(
        "root:rootsecret'", "root:***'")


def test_the_plugin_gets_the_install_script_itself(builder):
    template = tdl.parse_template(TEMPLATE, "s.tdl")
    _, _, typed = builder.os_plugin_for(template,
                                        {"install_script": KICKSTART})
    assert typed["install_script"] == KICKSTART


def test_url_credentials_never_reach_the_record_or_the_build_log(builder,
                                                                 caplog):
    caplog.set_level(logging.INFO)  # the build log gets the traceback
    record = _run(builder, {
        "activity": "Fetching http://u:actpw@h.example/x",
        "fail_at": "1", "steps": "2",
        "fail_message": "cannot download https://u:errpw@h.example/y",
        "token": "tokpw", "other": "http://u:otherpw@h.example/"})
    assert record.status == images.FAILED
    assert record.error == "cannot download https://***@h.example/y"
    assert record.activity == "Fetching http://***@h.example/x"
    assert record.parameters["other"] == "http://***@h.example/"
    with open(record.log) as handle:
        log = handle.read()
    assert "RuntimeError: cannot download https://***@h.example/y" in log
    for secret in ("actpw", "errpw", "tokpw", "otherpw"):
        assert secret not in log and secret not in json.dumps(
            record.to_dict())


def test_a_property_is_scrubbed(tmp_path):
    images_store = store.ImageStore(str(tmp_path / "store"))
    record = images.ImageRecord(type=images.BASE_IMAGE)
    images_store.add(record)
    context = jobs.BuildContext(images_store, record.identifier,
                                threading.Event())
    context.set_property("source", "http://u:pw@h/")
    assert images_store.get(record.identifier).properties["source"] == \
        "http://***@h/"


def test_redact_masks_install_scripts_and_hides_other_secrets():
    specs = common.PIPELINE_PARAMETERS
    kept = parameters.redact(specs, {"install_script": KICKSTART,
                                     "http_proxy": "http://u:pw@p:3128/",
                                     "install_kernel": "http://u:pw@h/k"})
    assert kept["http_proxy"] == "***"
    assert kept["install_kernel"] == "http://***@h/k"
    assert set(kept["install_script"]) == {"sha256", "masked"}


def test_cli_error_and_log_lines_scrubbed(cli_env, config_file, tmp_path):
    path = tmp_path / "t.tdl"
    path.write_text(TEMPLATE)
    result = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
         config_file, "--verbose", "--output", "json", "base_image",
         "--parameter", "fail_at", "0",
         "--parameter", "fail_message", "cannot download http://u:clipw@h/x",
         str(path)], env=cli_env, cwd=str(tmp_path), capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr  # --verbose shows the details
    assert "http://***@h/x" in result.stderr
    assert "clipw" not in result.stderr + result.stdout
    assert json.loads(result.stdout)["status_detail"]["error"] == \
        "cannot download http://***@h/x"

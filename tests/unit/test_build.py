import logging
import os

import pytest

from imgfac_nova import build
from imgfac_nova import cleanup
from imgfac_nova import images
from imgfac_nova import jobs
from imgfac_nova import parameters
from imgfac_nova import store
from imgfac_nova import template as tdl
from imgfac_nova.plugins import manager

TEMPLATE = """<template>
  <name>tiny</name>
  <os>
    <name>{os}</name>
    <version>1</version>
    <arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>rootsecret</rootpw>
  </os>
  <description>a tiny test image</description>
</template>
"""


@pytest.fixture
def builder(plugin_site, tmp_path):
    seen = []
    b = build.Builder(None, store.ImageStore(str(tmp_path / "store")),
                      on_change=seen.append)
    b.seen = seen
    return b


def _template(os_name="TestOS"):
    return tdl.parse_template(TEMPLATE.format(os=os_name), "tiny.tdl")


def _finish(job):
    assert job.wait(30)
    return [job_record for job_record in job.records]


def test_base_image_completes_with_data_icicle_and_progress(builder):
    job = builder.base_image(_template(), {"size": "100", "steps": "4"})
    _finish(job)
    record = builder.store.get(job.image.identifier)
    assert record.status == images.COMPLETE
    assert record.percent_complete == 100
    assert record.status_detail == {"activity": "Build complete", "error": None}
    assert os.path.getsize(record.data) == 100
    assert record.data == builder.store.body_path(record.identifier)
    assert "tiny" in record.icicle
    assert record.properties == {"os": "TestOS", "format": "raw"}
    assert record.plugin == "testos"
    steps = {}
    for seen in builder.seen:
        steps.setdefault(seen.activity, seen.percent_complete)
    assert list(steps.items()) == [
        ("Waiting to start", 0), ("Starting BaseImage", 0), ("Step 0", 0),
        ("Step 1", 25),
        ("Step 2", 50), ("Step 3", 75), ("Build complete", 100)]


def test_the_build_log_shows_each_progress_change_as_recorded(builder,
                                                              caplog):
    caplog.set_level(logging.INFO)
    job = builder.base_image(_template(), {"steps": "4"})
    _finish(job)
    record = builder.store.get(job.image.identifier)
    with open(record.log) as handle:
        shown = [line.split(" INFO imgfac_nova.jobs ", 1)[1]
                 for line in handle.read().splitlines()
                 if " INFO imgfac_nova.jobs " in line and "%" in line]
    assert shown == ["0% Starting BaseImage", "0% Step 0", "25% Step 1",
                     "50% Step 2", "75% Step 3"]
    # the database has it all too, for every process to read
    with open(record.log) as handle:
        assert builder.store.read_log(record.identifier) == handle.read()
    builder.store.remove(record.identifier)
    assert builder.store.read_log(record.identifier) == ""


def test_the_build_log_reaches_the_database_in_batches(builder, caplog,
                                                       monkeypatch):
    """Lines are written a batch every LOG_BATCH seconds while the build
    runs (not a write a line); a batch the database refused is written
    with the next."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(jobs, "LOG_BATCH", 0.2)
    appended, refuse = [], [True]
    append_log = builder.store.append_log

    def append(identifier, text):
        if refuse:
            refuse.pop()
            raise store.StoreError("database down")
        appended.append(text)
        append_log(identifier, text)
    monkeypatch.setattr(builder.store, "append_log", append)
    job = builder.base_image(_template(), {"steps": "6",
                                           "step_seconds": "0.3"})
    _finish(job)
    identifier = job.image.identifier
    assert not refuse and 3 <= len(appended) < 12
    with open(builder.store.get(identifier).log) as handle:
        assert builder.store.read_log(identifier) == handle.read()


def _stored_bytes(image_store):
    """Every file of the store: the database (and its journal), logs, data."""
    return b"".join(
        open(os.path.join(image_store.path, name), "rb").read()
        for name in os.listdir(image_store.path)
        if os.path.isfile(os.path.join(image_store.path, name)))


def test_secrets_are_redacted_in_stored_metadata(builder):
    job = builder.base_image(_template(), {"token": "tok-123"})
    _finish(job)
    stored = _stored_bytes(builder.store)
    assert b"tok-123" not in stored and b"rootsecret" not in stored
    assert builder.store.get(job.image.identifier).parameters["token"] == "***"


def test_plugin_exception_becomes_one_line_failure(builder, caplog):
    caplog.set_level(logging.INFO)
    job = builder.base_image(_template(), {"fail_at": "1"})
    _finish(job)
    record = builder.store.get(job.image.identifier)
    assert record.status == images.FAILED
    assert record.error == "step 1 exploded"
    assert record.activity == "Step 0"
    assert "Traceback" in caplog.text  # full detail goes to the log only
    with open(record.log) as handle:
        assert "RuntimeError: step 1 exploded" in handle.read()
    assert not os.path.exists(builder.store.body_path(record.identifier))


def test_cancel_stops_build_and_its_log_says_where(builder, caplog):
    caplog.set_level(logging.INFO)
    job = builder.base_image(_template(), {"steps": "50", "step_seconds": "1"})
    job.cancel()
    _finish(job)
    record = builder.store.get(job.image.identifier)
    assert record.status == images.FAILED
    assert record.error.startswith("interrupted at 0 %: ")
    with open(record.log) as handle:
        log = handle.read()
    assert "failed: interrupted at 0 %: " in log
    assert "Traceback" not in log  # a cancel is no failure to debug


@pytest.mark.parametrize("values,error", [
    ({"steps": "many"}, parameters.ParameterError),
    ({"os_plugin": "nope"}, manager.PluginError),
])
def test_bad_input_creates_no_record(builder, values, error):
    with pytest.raises(error):
        builder.base_image(_template(), values)
    assert builder.store.list() == []


def test_plugin_that_does_not_build_the_os_creates_no_record(builder):
    with pytest.raises(manager.PluginError,
                       match="OS plugin fedora40 does not build Plan9"):
        builder.base_image(_template("Plan9"), {"os_plugin": "fedora40"})
    assert builder.store.list() == []


def test_chain_base_target_provider(builder, tmp_path):
    provider = tmp_path / "provider"
    provider.mkdir()
    job = builder.provider_image("filecopy", str(provider), "let-me-in\n",
                                 {"size": "10"}, template=_template())
    _finish(job)
    base, target, pushed = (builder.store.get(r.identifier)
                            for r in job.records)
    assert [r.type for r in (base, target, pushed)] == [
        images.BASE_IMAGE, images.TARGET_IMAGE, images.PROVIDER_IMAGE]
    assert all(r.status == images.COMPLETE for r in (base, target, pushed))
    assert target.base_image_id == base.identifier
    assert pushed.target_image_id == target.identifier
    assert pushed.base_image_id == base.identifier
    with open(pushed.identifier_on_provider, "rb") as handle:
        assert handle.read() == b"\0" * 10 + b"TARGET"
    with open(base.data, "rb") as handle:
        assert handle.read() == b"\0" * 10  # the base is untouched
    assert b"let-me-in" not in _stored_bytes(builder.store)


def test_target_from_stored_base_and_failures_propagate(builder, tmp_path):
    base_job = builder.base_image(_template(), {})
    _finish(base_job)
    job = builder.target_image("filecopy", {"trailer": "XY"},
                               base_id=base_job.image.identifier)
    _finish(job)
    assert len(job.records) == 1
    assert builder.store.get(job.image.identifier).status == images.COMPLETE

    job = builder.provider_image("filecopy", str(tmp_path), "wrong",
                                 {}, image_id=job.image.identifier)
    _finish(job)
    failed = builder.store.get(job.image.identifier)
    assert failed.error == "the provider refused the credentials"

    job = builder.target_image("filecopy", {"fail_at": "0"},
                               template=_template())
    _finish(job)
    base, target = (builder.store.get(r.identifier) for r in job.records)
    assert base.status == target.status == images.FAILED
    assert target.error == ("BaseImage %s failed: step 0 exploded"
                            % base.identifier)


def test_target_needs_complete_base(builder):
    job = builder.base_image(_template(), {"fail_at": "0"})
    _finish(job)
    with pytest.raises(manager.PluginError, match="is FAILED, not COMPLETE"):
        builder.target_image("filecopy", {}, base_id=job.image.identifier)


def test_delete_removes_record_and_provider_copy(builder, tmp_path):
    job = builder.provider_image("filecopy", str(tmp_path), "let-me-in", {},
                                 template=_template())
    _finish(job)
    pushed = builder.store.get(job.image.identifier)
    assert os.path.exists(pushed.identifier_on_provider)
    deleted = cleanup.delete(builder, pushed.identifier, {}, credentials="let-me-in")
    assert deleted.status == images.DELETED
    assert not os.path.exists(pushed.identifier_on_provider)
    with pytest.raises(store.NotFound):
        builder.store.get(pushed.identifier)
    base_id = job.records[0].identifier
    assert cleanup.delete(builder, base_id, {}).status == images.DELETED


def test_delete_failure_keeps_record(builder, tmp_path):
    job = builder.provider_image("filecopy", str(tmp_path), "let-me-in", {},
                                 template=_template())
    _finish(job)
    os.unlink(builder.store.get(job.image.identifier).identifier_on_provider)
    result = cleanup.delete(builder, job.image.identifier, {})
    assert result.status == images.DELETEFAILED
    assert "No such file" in result.error
    assert builder.store.get(job.image.identifier).status == images.DELETEFAILED


def test_a_refusal_of_an_expired_callers_token_says_so(plugin_site,
                                                       tmp_path):
    """A daemon's build on its caller's token alone (token_window set):
    the cloud's 401 after that token expired is said as what it is."""
    from tests.unit.test_tokens import _caller
    b = build.Builder(None, store.ImageStore(str(tmp_path / "store")),
                      cloud_auth=_caller(-3 * 3600), token_window=7200)
    job = b.base_image(_template(), {"fail_at": "0", "fail_message": (
        "listing servers: the cloud refused the credentials (HTTP 401)")})
    _finish(job)
    error = b.store.get(job.image.identifier).error
    assert error.startswith("listing servers: the caller's token expired "
                            "3 h 0 min ago, ") and \
        "beyond Keystone's allow_expired window (2 h 0 min)" in error, error

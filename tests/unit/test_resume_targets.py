"""Target-image builds whose process died resume from their base image;
pushes to a provider do not (their credentials are never stored)."""
import socket

import pytest

from imgfac_nova import build
from imgfac_nova import images
from imgfac_nova import resume
from imgfac_nova import store
from tests.unit.test_build import _finish
from tests.unit.test_build import _template
from tests.unit.test_sweep import _dead_pid


@pytest.fixture
def builder(plugin_site, tmp_path):
    return build.Builder(None, store.ImageStore(str(tmp_path / "store")))


def _died(builder, record):
    """Store ``record`` as a build whose process died at 50 %."""
    record.status = images.BUILDING
    record.percent_complete = 50
    record.worker = "%s:%d" % (socket.gethostname(), _dead_pid())
    return builder.store.add(record)


def _base(builder):
    job = builder.base_image(_template(), {"size": "10"})
    _finish(job)
    return builder.store.get(job.image.identifier)


def test_a_target_whose_process_died_resumes_from_its_base(builder):
    base = _base(builder)
    record, _ = builder._target_step("filecopy", {"trailer": "XY"}, base)
    _died(builder, record)
    _finish(builder.resume(record.identifier))
    done = builder.store.get(record.identifier)
    assert done.status == images.COMPLETE and done.worker != record.worker
    with open(done.data, "rb") as handle:
        assert handle.read() == b"\0" * 10 + b"XY"  # copied again, once


def test_a_target_resumes_only_from_a_complete_base(builder):
    base = _base(builder)
    record, _ = builder._target_step("filecopy", {}, base)
    _died(builder, record)
    builder.store.update(base.identifier, status=images.FAILED)
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier)
    assert str(raised.value) == (
        "image %s cannot resume: its base image %s is FAILED, not COMPLETE"
        % (record.identifier, base.identifier))
    with pytest.raises(resume.ResumeError, match="leave --template out"):
        builder.resume(record.identifier, template=_template())
    assert builder.store.get(record.identifier).status == images.BUILDING


def test_a_push_does_not_resume(builder):
    record = _died(builder, images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy"))
    assert not resume.resumable(record, 0)
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier)
    assert str(raised.value) == (
        "image %s is a ProviderImage: a push does not resume (its "
        "credentials are never stored); abandon it (--abandon) and push "
        "again" % record.identifier)

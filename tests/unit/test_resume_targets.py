"""Target-image builds whose process died resume from their base image,
pushes from their target image, given again the provider credentials they
need (never stored); snapshot pushes do not resume."""
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


def _target_that_died(builder, base, values):
    """A target-image build of ``base`` whose process died at 50 %."""
    return _died(builder, images.ImageRecord(
        type=images.TARGET_IMAGE, plugin="filecloud", target="filecopy",
        base_image_id=base.identifier, template=base.template,
        parameters=values))


def test_a_target_whose_process_died_resumes_from_its_base(builder):
    base = _base(builder)
    record = _target_that_died(builder, base, {"trailer": "XY"})
    _finish(builder.resume(record.identifier))
    done = builder.store.get(record.identifier)
    assert done.status == images.COMPLETE and done.worker != record.worker
    with open(done.data, "rb") as handle:
        assert handle.read() == b"\0" * 10 + b"XY"  # copied again, once


def test_a_target_resumes_only_from_a_complete_base(builder):
    base = _base(builder)
    record = _target_that_died(builder, base, {})
    builder.store.update(base.identifier, status=images.FAILED)
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier)
    assert str(raised.value) == (
        "image %s cannot resume: its base image %s is FAILED, not COMPLETE"
        % (record.identifier, base.identifier))
    with pytest.raises(resume.ResumeError, match="leave --template out"):
        builder.resume(record.identifier, template=_template())
    assert builder.store.get(record.identifier).status == images.BUILDING


def _target(builder):
    job = builder.target_image("filecopy", {"trailer": "XY"},
                               base_id=_base(builder).identifier)
    _finish(job)
    return builder.store.get(job.image.identifier)


def _push(builder, target, provider):
    return _died(builder, images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy",
        provider=str(provider), target_image_id=target.identifier,
        base_image_id=target.base_image_id, parameters={"trailer": "XY"}))


def test_a_push_resumes_given_its_credentials_again(builder, tmp_path):
    record = _push(builder, _target(builder), tmp_path)
    assert resume.resumable(record, 0)
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier)
    assert str(raised.value) == (
        "image %s pushes to a provider whose credentials are never stored: "
        "give them again with --credentials FILE" % record.identifier)
    assert builder.store.get(record.identifier) == record  # nothing changed
    _finish(builder.resume(record.identifier, credentials="let-me-in"))
    done = builder.store.get(record.identifier)
    assert done.status == images.COMPLETE and done.worker != record.worker
    assert done.identifier_on_provider == str(
        tmp_path / (record.identifier + ".img"))
    assert "let-me-in" not in str(done.to_dict())


def test_a_push_to_a_clouds_yaml_entry_takes_no_credentials(
        builder, tmp_path, monkeypatch):
    from tests.plugins import filecloud
    monkeypatch.setattr(filecloud.FileCloud, "provider_needs_credentials",
                        lambda self, provider: False)
    record = _push(builder, _target(builder), "@devstack")
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier, credentials="let-me-in")
    assert str(raised.value) == (
        "image %s pushes to @devstack, whose credentials come from "
        "clouds.yaml: leave --credentials out" % record.identifier)
    assert builder.store.get(record.identifier) == record


def test_a_push_resumes_only_from_a_complete_target(builder, tmp_path):
    target = _target(builder)
    record = _push(builder, target, tmp_path)
    builder.store.update(target.identifier, status=images.BUILDING,
                         worker=record.worker)  # its process died too
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier, credentials="let-me-in")
    assert str(raised.value) == (
        "image %s cannot resume: its target image %s is BUILDING, not "
        "COMPLETE; resume it first" % (record.identifier, target.identifier))
    with pytest.raises(resume.ResumeError, match="leave --template out"):
        builder.resume(record.identifier, template=_template(),
                       credentials="let-me-in")
    with pytest.raises(resume.ResumeError, match="takes no --credentials"):
        builder.resume(target.identifier, credentials="let-me-in")
    assert builder.store.get(record.identifier) == record


def test_a_snapshot_push_does_not_resume(builder):
    record = _died(builder, images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy"))
    assert not resume.resumable(record, 0)
    with pytest.raises(resume.ResumeError) as raised:
        builder.resume(record.identifier)
    assert str(raised.value) == (
        "image %s is a snapshot push (--snapshot): it does not resume; "
        "abandon it (--abandon) and push again" % record.identifier)


class _Provider:
    """A cloud plugin whose providers named "@..." need no credentials."""

    @staticmethod
    def provider_needs_credentials(provider):
        return not provider.startswith("@")


@pytest.mark.parametrize("provider,trusted,why", [
    ("@devstack", True, None),
    ("@devstack", False, "it pushes to @devstack, one of the daemon's "
     "clouds.yaml entries, which its API callers may not name"),
    ('{"auth_url": "http://keystone/"}', True, "its provider's credentials "
     "are never stored; push it again"),
])
def test_which_pushes_the_daemon_resumes_by_itself(provider, trusted, why):
    record = images.ImageRecord(type=images.PROVIDER_IMAGE,
                                provider=provider, target_image_id="t")
    assert resume.unattended(record, _Provider, trusted) == why
    base = images.ImageRecord(type=images.BASE_IMAGE)
    assert resume.unattended(base, _Provider, False) is None

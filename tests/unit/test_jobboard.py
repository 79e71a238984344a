"""Builds for the jobboard's workers without a jobboard: the URL option,
what a posted build may hold (no secret), a queued build cancelled before
a worker took it, a build handed back between two steps, and the
one-line refusal when the jobboard cannot be reached."""
import socket

import pytest

from imgfac_nova import build
from imgfac_nova import cleanup
from imgfac_nova import images
from imgfac_nova import jobboard
from imgfac_nova import resume
from imgfac_nova import store
from imgfac_nova import template as tdl
from novaimagebuilder import errors

TEMPLATE = """<template>
  <name>queued</name>
  <os>
    <name>TestOS</name><version>1</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>{extra}
  </os>
</template>
"""


@pytest.fixture
def builder(plugin_site, tmp_path):
    return build.Builder(None, store.ImageStore(str(tmp_path / "store")))


def _template(extra=""):
    return tdl.parse_template(TEMPLATE.format(extra=extra), "queued.tdl")


@pytest.mark.parametrize("url, parsed", [
    ("zookeeper://127.0.0.1:2181",
     ("zookeeper", "127.0.0.1:2181", jobboard.DEFAULT_PATH)),
    ("zookeeper://a:2181,b:2182/jobs/", ("zookeeper", "a:2181,b:2182",
                                         "/jobs")),
    ("redis://127.0.0.1:6379", ("redis", "127.0.0.1:6379", "0")),
    ("redis://:s3cret@redis:6379/2", ("redis", "redis:6379", "2")),
])
def test_backend_urls(url, parsed):
    assert jobboard.parse_url(url) == parsed


@pytest.mark.parametrize("url, says", [
    ("etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379: only zookeeper:// and "
                              "redis:// URLs are supported"),
    ("zookeeper:///jobs", "give HOST:PORT"),
    ("zookeeper://zk/jobs", "give HOST:PORT"),
    ("zookeeper://u:p@zk:2181", "give HOST:PORT"),
    ("redis://a:1,b:2", "give redis://[:PASSWORD@]HOST:PORT[/DB]"),
    ("redis://:s3cret@r:1/jobs", "redis://***@r:1/jobs: give redis://"),
])
def test_bad_backend_urls_say_why(url, says):
    with pytest.raises(jobboard.JobboardError) as raised:
        jobboard.parse_url(url)
    assert says in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_a_queued_build_holds_its_id_only(builder):
    posted = []
    record = builder.queue_base_image(_template(), {"steps": "2"},
                                      posted.append)
    assert [r.identifier for r in posted] == [record.identifier]
    stored = builder.store.get(record.identifier)
    assert stored.status == images.PENDING
    assert stored.worker == resume.QUEUED
    assert stored.activity == "Waiting for a worker"


@pytest.mark.parametrize("extra, values, says", [
    ("<rootpw>s3cret</rootpw>", {}, "root password"),
    ("", {"token": "t0ken"}, "token"),
])
def test_a_build_with_secrets_is_not_queued(builder, extra, values, says):
    posted = []
    with pytest.raises(resume.ResumeError) as raised:
        builder.queue_base_image(_template(extra), values, posted.append)
    assert str(raised.value) == (
        "a build run by the jobboard's workers cannot hold secrets, which "
        "are never stored or posted: this one has %s" % says)
    assert posted == [] and builder.store.list() == []


def test_a_build_that_cannot_be_posted_fails_naming_why(builder):
    def refuse(record):
        raise jobboard.JobboardError("cannot reach the jobboard at zk:2181")
    with pytest.raises(jobboard.JobboardError):
        builder.queue_base_image(_template(), {}, refuse)
    [record] = builder.store.list()
    assert record.status == images.FAILED
    assert record.error == "not posted: cannot reach the jobboard at zk:2181"


def test_a_queued_build_cancelled_before_a_worker_took_it(builder):
    record = builder.queue_base_image(_template(), {}, lambda record: None)
    stopped = cleanup.stop(builder, record.identifier, timeout=1)
    assert stopped.status == images.FAILED
    assert stopped.error == "cancelled before a worker took it"
    with pytest.raises(resume.ResumeError):  # a worker claiming it now
        builder.resume(record.identifier, owner="jobboard:elsewhere:1")


def test_a_claimed_build_handed_back_between_two_steps(builder):
    record = builder.queue_base_image(_template(), {"steps": "3"},
                                      lambda record: None)
    answers = iter([True, True, False])
    builder.checkpoint = lambda: next(answers)
    job = builder.resume(record.identifier, owner="jobboard:here:1")
    assert job.wait(30)
    now = builder.store.get(record.identifier)
    assert now.status == images.BUILDING  # nothing undone, not FAILED
    assert now.worker == resume.QUEUED  # a delete need not wait for it
    assert now.activity == "Waiting for a worker (handed back)"
    assert now.percent_complete == 33
    # Another worker goes on with it.
    builder.checkpoint = None
    job = builder.resume(record.identifier, owner="jobboard:there:2")
    assert job.wait(30)
    assert builder.store.get(record.identifier).status == images.COMPLETE


def test_a_jobboard_build_is_never_judged_dead_by_a_sweep(builder):
    record = builder.queue_base_image(_template(), {}, lambda record: None)
    for worker in (resume.QUEUED, "jobboard:%s:1" % socket.gethostname()):
        record.worker = worker
        assert builder.still_running(record)


def test_an_unreachable_jobboard_is_one_line(tmp_path):
    from oslo_config import cfg
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    conf = cfg.ConfigOpts()
    jobboard.register(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", "zookeeper://127.0.0.1:%d" % port,
                      group="jobboard")
    conf.set_override("connect_timeout", 1, group="jobboard")
    with pytest.raises(jobboard.JobboardError) as raised:
        jobboard.Board(conf)
    assert str(raised.value).startswith(
        "cannot reach the jobboard at 127.0.0.1:%d: " % port)
    assert "\n" not in str(raised.value)


def test_handed_back_is_no_build_error():
    assert not isinstance(errors.HandedBack(), errors.BuildError)


def test_a_hand_back_leaves_a_build_another_worker_took_alone(builder):
    record = builder.queue_base_image(_template(), {}, lambda record: None)
    record = builder.store.modify(record.identifier, lambda current:
                                  resume.take(current, "jobboard:other:2"))
    builder.store.modify(record.identifier, lambda current: resume.hand_back(
        current, "jobboard:here:1", "handed back"))
    now = builder.store.get(record.identifier)
    assert now.worker == "jobboard:other:2"
    assert now.activity == "Resuming"


def test_a_failure_after_another_worker_took_the_build_over(builder):
    """The claim was lost mid-step and another worker took the build: the
    step's failure here neither fails the record nor undoes anything."""
    record = builder.queue_base_image(
        _template(), {"steps": "3", "fail_at": "1"}, lambda record: None)

    def taken_over():
        builder.store.modify(record.identifier, lambda current: resume.take(
            current, "jobboard:other:2"))
        return True
    builder.checkpoint = taken_over
    job = builder.resume(record.identifier, owner="jobboard:here:1")
    assert job.wait(30)
    now = builder.store.get(record.identifier)
    assert now.status == images.BUILDING
    assert now.worker == "jobboard:other:2"
    assert now.error is None


def test_reverts_leave_a_build_taken_over_to_its_new_worker():
    from novaimagebuilder.tasks import context
    removed = []
    for owned, expected in ((lambda: False, []), (lambda: True, ["x"]),
                            (None, ["x"])):
        run = context.BuildRun(object(), None, owned=owned)
        run.remove("server x", removed.append, "x")
        assert removed == expected and run.left == []
        removed.clear()

"""The worker's decisions without a jobboard: which jobs it consumes or
gives back, and whether it still owns a job's claim."""
import types

import pytest
from oslo_config import cfg
from taskflow import exceptions

from imgfac_nova import images
from imgfac_nova import jobboard
from imgfac_nova import store
from imgfac_nova import worker


class Board:
    def __init__(self, owners):
        self.board = self
        self.url = "zookeeper://zk:2181"
        self._owners = iter(owners)

    def find_owner(self, job):
        owner = next(self._owners)
        if isinstance(owner, Exception):
            raise owner
        return owner


def _worker(tmp_path, owners=(), images_store=None):
    conf = cfg.ConfigOpts()
    jobboard.register(conf)
    conf([], default_config_files=[])
    conf.set_override("session_timeout", 2.0, group="jobboard")
    return worker.Worker(conf, images_store or store.ImageStore(
        str(tmp_path / "store")), Board(owners), plugins=object())


def _job(image_id):
    return types.SimpleNamespace(name="build-x", details={
        "image_id": image_id})


def test_a_job_of_no_image_is_consumed(tmp_path):
    assert _worker(tmp_path).run_job(
        _job("0b1c7c58-5b8b-4e43-9a55-3b3c5d2b8a7e")) is True


def test_a_job_whose_build_ended_is_consumed(tmp_path):
    images_store = store.ImageStore(str(tmp_path / "store"))
    record = images.ImageRecord(type=images.BASE_IMAGE,
                                status=images.FAILED)
    images_store.add(record)
    assert _worker(tmp_path, images_store=images_store).run_job(
        _job(record.identifier)) is True


def test_a_job_that_cannot_be_run_now_is_given_back(tmp_path, monkeypatch):
    class Down:
        def get(self, identifier):
            raise store.StoreError("database sqlite:///x: unreachable")
    monkeypatch.setattr(worker, "RETRY_PAUSE", 0)
    assert _worker(tmp_path, images_store=Down()).run_job(
        _job("0b1c7c58-5b8b-4e43-9a55-3b3c5d2b8a7e")) is False


@pytest.mark.parametrize("owners, owns", [
    (["me"], True),
    (["someone-else"], False),
    ([None], False),
    ([exceptions.JobFailure("down"), "me"], True),
    ([exceptions.JobFailure("down")] * 10, False),
])
def test_owns(tmp_path, owners, owns):
    w = _worker(tmp_path, owners)
    w.name = "me"
    assert w.owns(_job("x")) is owns


def test_a_stopping_worker_goes_to_no_next_step_but_holds_its_claim(
        tmp_path):
    """SIGTERM hands a build back between steps; in a step, its actions in
    the cloud go on while the claim is held."""
    w = _worker(tmp_path, ["me"])
    w.name = "me"
    w.stopping.set()
    assert w.owns(_job("x")) is False
    assert w.holds(_job("x")) is True


def test_the_builds_of_a_worker_ask_the_claim_before_each_action(tmp_path):
    w = _worker(tmp_path, ["me", "someone-else"])
    w.name = "me"
    builder = w._builder(images.ImageRecord(type=images.BASE_IMAGE),
                         _job("x"), None)
    assert [builder.claim(), builder.claim()] == [True, False]

"""A flow handed back between two steps: nothing reverted, the next run
goes on after the last finished step; the claim count of a build."""
import pytest
from taskflow import task
from taskflow.patterns import linear_flow
from taskflow.persistence.backends import impl_memory

from novaimagebuilder import engine
from novaimagebuilder import errors


class Step(task.Task):
    def __init__(self, name, ran):
        super().__init__(name=name)
        self.ran = ran

    def execute(self):
        self.ran.append(self.name)
        return self.name

    def revert(self, *args, **kwargs):
        self.ran.append("revert " + self.name)


def _flow(ran):
    return linear_flow.Flow("three").add(
        *[Step(name, ran) for name in ("one", "two", "three")])


def test_a_checkpoint_that_says_no_hands_the_flow_back_unreverted():
    backend, ran = impl_memory.MemoryBackend(), []
    answers = iter([True, False])
    with pytest.raises(errors.HandedBack) as raised:
        engine.run(_flow(ran), "b1", backend,
                   checkpoint=lambda: next(answers))
    assert str(raised.value) == "handed back after 1 of 3 steps"
    assert ran == ["one"]
    results = engine.run(_flow(ran), "b1", backend)
    assert ran == ["one", "two", "three"]
    assert results == {"one": "one", "two": "two", "three": "three"}


def test_a_checkpoint_asked_before_the_first_step():
    backend, ran = impl_memory.MemoryBackend(), []
    with pytest.raises(errors.HandedBack) as raised:
        engine.run(_flow(ran), "b2", backend, checkpoint=lambda: False)
    assert str(raised.value) == "handed back after 0 of 3 steps"
    assert ran == []


def test_claims_are_counted_in_the_build_logbook():
    backend = impl_memory.MemoryBackend()
    assert engine.count_claim(backend, "b3") == 1
    assert engine.count_claim(backend, "b3") == 2
    assert engine.count_claim(backend, "b3", -1) == 1
    ran = []
    engine.run(_flow(ran), "b3", backend)
    assert engine.count_claim(backend, "b3") == 2  # a run keeps the count

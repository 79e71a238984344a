"""The build as a TaskFlow flow: its tasks in order with what they require
and provide, and what the engine saves of a build (plain ids and values,
never a secret)."""
import contextlib
import json
import os

import pytest
from taskflow.persistence.backends import impl_memory

from novaimagebuilder import engine
from novaimagebuilder import errors
from novaimagebuilder.installer import media
from novaimagebuilder import runner
from novaimagebuilder.flows import base_image
from novaimagebuilder.tasks import context
from novaimagebuilder.tasks import names
from tests.unit.test_pipeline import TEMPLATE
from tests.unit.test_pipeline import Recorder
from tests.unit.test_pipeline import fakes  # noqa: F401 (fixture)

BASE_STEPS = [names.FETCH_MEDIA, names.FIND_JEOS, names.PREPARE_MEDIA,
              names.BOOT_INSTALLER, names.WAIT_INSTALLER, names.CAPTURE_JEOS,
              names.REMOVE_INSTALLER, names.KEEP_JEOS, names.CUSTOMIZE,
              names.CAPTURE_IMAGE, names.REMOVE_GUEST, names.DISCARD_JEOS]


def test_the_base_image_flow_in_order_with_its_values():
    flow = base_image.get_flow(context.BuildRun(Recorder(), None))
    assert [atom.name for atom in flow] == BASE_STEPS
    provides = {atom.name: set(atom.provides) for atom in flow}
    assert provides[names.BOOT_INSTALLER] == {names.INSTALLER}
    assert provides[names.KEEP_JEOS] == {names.JEOS_INFO, names.DISK}
    assert provides[names.CUSTOMIZE] == {names.GUEST}
    assert flow.requires == set()  # all from earlier tasks
    customize = base_image.get_customize_flow(
        context.BuildRun(Recorder(), None))
    assert [atom.name for atom in customize] == [
        names.CUSTOMIZE, names.CAPTURE_IMAGE, names.REMOVE_GUEST]
    assert customize.requires == {names.DISK}


def _saved(backend, build_id):
    with contextlib.closing(backend.get_connection()) as conn:
        book = conn.get_logbook(build_id)
        return {atom.name: (atom.state, atom.results)
                for flow in book for atom in flow}


def test_the_engine_saves_each_result_as_plain_values(fakes):  # noqa: F811
    backend = impl_memory.MemoryBackend()
    build_id = "0b6e7f5a-8f87-4b59-a3c3-b2a3d6e1a2c4"
    script = "rootpw --plaintext Sup3r-Secret\ndisk /dev/vda\n"
    result = runner.Pipeline(
        Recorder(), media.MediaCache(str(fakes)), build_id=build_id,
        persistence=backend).run(TEMPLATE, {"install_script": script})
    saved = _saved(backend, build_id)
    assert list(saved) == BASE_STEPS
    assert {state for state, _ in saved.values()} == {"SUCCESS"}
    assert saved[names.BOOT_INSTALLER][1]["machine"] == "installer"
    assert saved[names.CAPTURE_IMAGE][1] == result.image == "image"
    assert saved[names.CUSTOMIZE][1]["icicle"] == result.icicle
    text = json.dumps({k: v for k, (_, v) in saved.items()})
    assert "Sup3r-Secret" not in text and "PRIVATE KEY" not in text


def test_a_failed_build_saves_its_reverts(fakes):  # noqa: F811
    backend = impl_memory.MemoryBackend()
    build_id = "6c3a1d0e-2b7f-4e0e-9a55-0c1d2e3f4a5b"
    recorder = Recorder(fail="capture_image")
    try:
        runner.Pipeline(recorder, media.MediaCache(str(fakes)),
                        build_id=build_id, persistence=backend).run(
            TEMPLATE, {"install_script": "disk /dev/vda\n"})
    except Exception as exc:
        assert str(exc) == "capture_image broke"
    else:
        raise AssertionError("the build did not fail")
    states = {name: state for name, (state, _) in
              _saved(backend, build_id).items()}
    assert states[names.CAPTURE_IMAGE] == "REVERTED"
    assert states[names.BOOT_INSTALLER] == "REVERTED"
    assert states[names.DISCARD_JEOS] == "PENDING"
    assert recorder.alive == set()


def test_the_records_database_keeps_the_flow(fakes, tmp_path):  # noqa: F811
    from imgfac_nova import store
    images = store.ImageStore(str(tmp_path / "store"))
    build_id = "9d0c1b2a-3e4f-4a5b-8c7d-6e5f4a3b2c1d"
    runner.Pipeline(Recorder(), media.MediaCache(str(fakes)),
                    build_id=build_id,
                    persistence=images.flow_persistence()).run(
        TEMPLATE, {"install_script": "disk /dev/vda\n"})
    # A store opened anew on the same database sees it.
    again = store.ImageStore(str(tmp_path / "store"))
    saved = _saved(again.flow_persistence(), build_id)
    assert list(saved) == BASE_STEPS
    assert saved[names.CAPTURE_IMAGE] == ("SUCCESS", "image")


def test_flows_share_one_persistence_connection(
        fakes, tmp_path, monkeypatch):  # noqa: F811
    """Each of TaskFlow's connections makes the tables' metadata (and so
    compiles every statement) anew: two builds at once save their steps
    through one, each its own results."""
    import threading

    from taskflow.persistence.backends import impl_sqlalchemy

    from imgfac_nova import store
    made = []
    connection = impl_sqlalchemy.Connection.__init__
    monkeypatch.setattr(impl_sqlalchemy.Connection, "__init__",
                        lambda self, *args, **kwargs: made.append(
                            connection(self, *args, **kwargs)))
    images = store.ImageStore(str(tmp_path / "store"))
    builds = ["9d0c1b2a-3e4f-4a5b-8c7d-6e5f4a3b2c1%d" % n for n in range(2)]
    threads = [threading.Thread(target=runner.Pipeline(
        Recorder(), media.MediaCache(str(fakes)), build_id=build_id,
        persistence=images.flow_persistence()).run, args=(
            TEMPLATE, {"install_script": "disk /dev/vda\n"}))
        for build_id in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for build_id in builds:
        saved = _saved(images.flow_persistence(), build_id)
        assert saved[names.CAPTURE_IMAGE] == ("SUCCESS", "image")
    assert len(made) == 1


def test_a_flow_saves_each_state_change_but_no_progress_alone(
        fakes, tmp_path, monkeypatch):  # noqa: F811
    """The engine saves a task's progress right after each of its state
    changes; only the state changes reach the database (reverts too)."""
    from taskflow.persistence.backends import impl_sqlalchemy

    from imgfac_nova import store
    saves = []
    update = impl_sqlalchemy.Connection.update_atom_details
    monkeypatch.setattr(
        impl_sqlalchemy.Connection, "update_atom_details",
        lambda self, detail: saves.append((detail.name, detail.state)) or
        update(self, detail))
    images = store.ImageStore(str(tmp_path / "store"))
    build_id = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
    with pytest.raises(errors.BuildError, match="capture_image broke"):
        runner.Pipeline(Recorder(fail="capture_image"),
                        media.MediaCache(str(fakes)), build_id=build_id,
                        persistence=images.flow_persistence()).run(
            TEMPLATE, {"install_script": "disk /dev/vda\n"})
    boot = [state for name, state in saves if name == names.BOOT_INSTALLER]
    # each change once: TaskFlow saved each of these states twice, the
    # second time with the task's progress alone (the second SUCCESS is
    # the intention to revert)
    assert boot == ["RUNNING", "SUCCESS", "SUCCESS", "REVERTING", "REVERTED"]
    saved = _saved(store.ImageStore(str(tmp_path / "store"))
                   .flow_persistence(), build_id)
    assert saved[names.BOOT_INSTALLER][0] == "REVERTED"
    assert saved[names.CAPTURE_IMAGE][0] == "REVERTED"


class _Crash(Recorder):
    """Dies like a killed process (no revert, nothing saved) at ``step``."""

    def __init__(self, step):
        super().__init__()
        self.crash = step

    def _do(self, step, result=None):
        if step == self.crash:
            os._exit(9)
        return super()._do(step, result)


def _crashed_run(fakes, tmp_path, build_id, step):  # noqa: F811
    """Run a build in a child process that dies at ``step``."""
    from imgfac_nova import store
    pid = os.fork()
    if pid == 0:
        runner.Pipeline(_Crash(step), media.MediaCache(str(fakes)),
                        build_id=build_id, persistence=store.ImageStore(
                            str(tmp_path / "store")).flow_persistence()).run(
            TEMPLATE, {"install_script": "disk /dev/vda\n"})
        os._exit(0)
    assert os.waitpid(pid, 0)[1] >> 8 == 9
    return store.ImageStore(str(tmp_path / "store")).flow_persistence()


@pytest.mark.parametrize("step, done, left", [
    ("wait_installer", [names.FETCH_MEDIA, names.FIND_JEOS,
                        names.PREPARE_MEDIA, names.BOOT_INSTALLER],
     {"installer"}),
    ("capture_image", BASE_STEPS[:BASE_STEPS.index(names.CUSTOMIZE) + 1],
     {"jeos", "guest"}),
])
def test_a_build_whose_process_died_resumes_after_its_last_finished_step(
        fakes, tmp_path, step, done, left):  # noqa: F811
    build_id = "5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716"
    persistence = _crashed_run(fakes, tmp_path, build_id, step)
    assert engine.finished_tasks(persistence, build_id, "base-image") == \
        set(done)
    again = Recorder()
    again.alive |= left  # as the dead process left them
    result = runner.Pipeline(again, media.MediaCache(str(fakes)),
                             build_id=build_id,
                             persistence=persistence).run(
        TEMPLATE, {"install_script": "disk /dev/vda\n"})
    assert result.image == "image"
    assert "prepare_media" not in again.calls
    assert "boot_installer" not in again.calls
    assert again.calls[0] == step
    assert again.alive == {"image"}
    saved = _saved(persistence, build_id)
    assert {state for state, _ in saved.values()} == {"SUCCESS"}
    # ran to its end: a process that died before the build had used the
    # results (its record not COMPLETE yet) resumes with them, running
    # nothing again
    assert engine.finished_tasks(persistence, build_id, "base-image") == \
        set(BASE_STEPS)
    after = Recorder()
    result = runner.Pipeline(after, media.MediaCache(str(fakes)),
                             build_id=build_id,
                             persistence=persistence).run(
        TEMPLATE, {"install_script": "disk /dev/vda\n"})
    assert result.image == "image" and after.calls == []


def test_a_resumed_build_whose_installer_is_gone_fails_and_reverts(
        fakes, tmp_path):  # noqa: F811
    build_id = "0f1e2d3c-4b5a-4697-8877-665544332211"
    persistence = _crashed_run(fakes, tmp_path, build_id, "wait_installer")
    again = Recorder()  # nothing left in the cloud
    with pytest.raises(errors.Gone, match="installer is gone"):
        runner.Pipeline(again, media.MediaCache(str(fakes)),
                        build_id=build_id, persistence=persistence).run(
            TEMPLATE, {"install_script": "disk /dev/vda\n"})
    states = {name: state for name, (state, _) in
              _saved(persistence, build_id).items()}
    assert states[names.BOOT_INSTALLER] == "REVERTED"
    assert again.calls == []


class _ClaimLostAt(Recorder):
    """The build's claim is taken by another worker while ``step`` runs."""

    def __init__(self, step):
        super().__init__()
        self.lost_at, self.held = step, True

    def _do(self, step, result=None):
        if step == self.lost_at:
            self.held = False
        return super()._do(step, result)


@pytest.mark.parametrize("lost_at, stopped_before, step, left", [
    ("prepare_media", "boot_installer", names.BOOT_INSTALLER, set()),
    ("wait_installer", "capture_jeos", names.CAPTURE_JEOS, {"installer"}),
    ("capture_jeos", "delete_installer", names.REMOVE_INSTALLER,
     {"installer", "jeos"}),
])
def test_a_worker_that_lost_its_claim_stops_before_its_next_action(
        fakes, lost_at, stopped_before, step, left):  # noqa: F811
    """Asked before each action in the cloud (not only between steps):
    the step stops there, nothing is undone, the step stays running, and
    the next owner runs it again from its start, once."""
    build_id = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
    persistence, lost = impl_memory.MemoryBackend(), _ClaimLostAt(lost_at)
    with pytest.raises(errors.HandedBack) as raised:
        runner.Pipeline(lost, media.MediaCache(str(fakes)), build_id=build_id,
                        persistence=persistence,
                        claim=lambda: lost.held).run(
            TEMPLATE, {"install_script": "disk /dev/vda\n"})
    action = {"boot_installer": "boot_installer"}.get(
        stopped_before, stopped_before.split("_")[0])  # the backend's call
    assert str(raised.value) == "claim lost before %s" % action
    assert lost.calls[-1] == lost_at and lost.alive == left
    states = {name: state for name, (state, _) in
              _saved(persistence, build_id).items()}
    assert "REVERTED" not in states.values()
    assert [name for name, state in states.items()
            if state == "RUNNING"] == [step]
    again = Recorder()
    again.alive |= left
    result = runner.Pipeline(again, media.MediaCache(str(fakes)),
                             build_id=build_id, persistence=persistence,
                             claim=lambda: True).run(
        TEMPLATE, {"install_script": "disk /dev/vda\n"})
    assert again.calls[0] == stopped_before
    assert result.image == "image" and again.alive == {"image"}

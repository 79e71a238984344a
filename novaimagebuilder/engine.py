"""Running a build's flow on TaskFlow, its progress saved as it goes.

A flow runs on TaskFlow's serial engine, in the calling thread. Each build
has a logbook (its uuid the build's id) holding a flow
detail per flow it ran: every task's state and result (plain ids and
values, never a secret or an object) are saved there as the task ends, in
the persistence backend given (TaskFlow's SQLAlchemy backend on the
records' database), else in memory. A failed task makes the engine revert
the tasks that ran, newest first, from their saved results; the failure is
then raised as it was raised in the task.

A flow whose process died is resumed by running it again for the same
build: the engine finds its unfinished flow detail in the build's logbook,
does not run again the tasks that finished (their saved results feed the
rest), and runs again from its start a task that was running. A flow that
had run to its end when its process died gives its saved results at once.

A ``checkpoint`` (a callable) is asked before each task whether the build
may go on; when it says no, the engine stops after the task that runs,
reverts nothing and the run raises HandedBack: the flow detail stays
unfinished, for another process to resume.
"""
import contextlib

from oslo_utils import uuidutils
from taskflow import engines
from taskflow import exceptions
from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory

from novaimagebuilder import errors

#: States of a flow detail whose flow ended (no resuming it).
_ENDED = (states.SUCCESS, states.REVERTED, states.FAILURE)


def logbook_name(build_id):
    return "imgfac-nova-%s" % build_id


def run(flow, build_id=None, persistence=None, store=None, checkpoint=None):
    """Run ``flow`` for the build ``build_id`` (None: a build of its own)
    with ``store`` (plain values the first tasks require), or resume it
    where the build's unfinished run of it stopped; returns ``{task name:
    result}`` of its tasks. HandedBack when ``checkpoint()`` said no."""
    backend = persistence or impl_memory.MemoryBackend()
    build_id = build_id or uuidutils.generate_uuid()
    book = _logbook(backend, build_id)
    detail = _current(book, flow.name)
    if detail is not None and detail.state == states.SUCCESS:
        return {atom.name: atom.results for atom in detail}
    if detail is None:
        detail = models.FlowDetail(flow.name, uuidutils.generate_uuid())
        book.add(detail)
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
    engine = engines.load(flow, store=store, flow_detail=detail, book=book,
                          backend=backend, engine="serial")
    suspended = False
    for state in engine.run_iter():
        if state == states.SCHEDULING and not suspended and \
                checkpoint is not None and not checkpoint():
            engine.suspend()
            suspended = True
    if engine.storage.get_flow_state() == states.SUSPENDED:
        states_now = engine.storage.get_atoms_states([a.name for a in flow])
        raise errors.HandedBack("handed back after %d of %d steps" % (
            sum(1 for state, _ in states_now.values()
                if state == states.SUCCESS), len(states_now)))
    return {atom.name: engine.storage.get(atom.name) for atom in flow}


def _logbook(backend, build_id):
    """The build's logbook, made when it has none yet."""
    with contextlib.closing(backend.get_connection()) as conn:
        try:
            return conn.get_logbook(build_id)
        except exceptions.NotFound:
            return models.LogBook(logbook_name(build_id), uuid=build_id)


def _current(book, name):
    """The flow detail of ``book``'s run of the flow ``name`` to go on
    with: the one that did not end (its process died), else the one that
    ran to its end (its process died before the build had used its
    results); None when there is neither."""
    found = [detail for detail in book if detail.name == name]
    for detail in found:
        if detail.state not in _ENDED:
            return detail
    for detail in found:
        if detail.state == states.SUCCESS:
            return detail
    return None


def finished_tasks(persistence, build_id, name):
    """Names of the tasks that finished (their results saved) in the
    build's run of the flow ``name`` to go on with (see :func:`_current`);
    empty when it has none."""
    with contextlib.closing(persistence.get_connection()) as conn:
        try:
            book = conn.get_logbook(build_id)
        except exceptions.NotFound:
            return set()
    detail = _current(book, name)
    if detail is None:
        return set()
    return {atom.name for atom in detail if atom.state == states.SUCCESS}


def count_claim(persistence, build_id, step=1):
    """Add ``step`` to the number of times a jobboard worker claimed the
    build (kept in its logbook's meta); returns the new count."""
    book = _logbook(persistence, build_id)
    book.meta = dict(book.meta or {}, claims=(book.meta or {}).get(
        "claims", 0) + step)
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    return book.meta["claims"]

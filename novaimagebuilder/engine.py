"""Running a build's flow on TaskFlow, its progress saved as it goes.

A flow runs on TaskFlow's serial engine, in the calling thread. Each build
has a logbook (its uuid the build's id) holding a flow
detail per flow it ran: every task's state and result (plain ids and
values, never a secret or an object) are saved there as the task ends, in
the persistence backend given (TaskFlow's SQLAlchemy backend on the
records' database), else in memory. A failed task makes the engine revert
the tasks that ran, newest first, from their saved results; the failure is
then raised as it was raised in the task.
"""
import contextlib

from oslo_utils import uuidutils
from taskflow import engines
from taskflow import exceptions
from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory


def logbook_name(build_id):
    return "imgfac-nova-%s" % build_id


def run(flow, build_id=None, persistence=None, store=None):
    """Run ``flow`` for the build ``build_id`` (None: a build of its own)
    with ``store`` (plain values the first tasks require); returns ``{task
    name: result}`` of its tasks."""
    backend = persistence or impl_memory.MemoryBackend()
    build_id = build_id or uuidutils.generate_uuid()
    book = _logbook(backend, build_id)
    detail = models.FlowDetail(flow.name, uuidutils.generate_uuid())
    book.add(detail)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    engine = engines.load(flow, store=store, flow_detail=detail, book=book,
                          backend=backend, engine="serial")
    engine.run()
    return {atom.name: engine.storage.get(atom.name) for atom in flow}


def _logbook(backend, build_id):
    """The build's logbook, made when it has none yet."""
    with contextlib.closing(backend.get_connection()) as conn:
        try:
            return conn.get_logbook(build_id)
        except exceptions.NotFound:
            return models.LogBook(logbook_name(build_id), uuid=build_id)

"""TaskFlow's persistence of build flows in the records' database."""
import threading

from taskflow.persistence.backends import impl_sqlalchemy

#: What TaskFlow keeps of a task's progress in its detail's meta.
_PROGRESS_KEYS = ("progress", "progress_details")


class FlowBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow's SQLAlchemy backend on ``engine``, handing out one
    connection object. TaskFlow asks for a connection for each save of a
    task's state, and each new one made the tables' metadata anew, so
    every save compiled its SQL again (a third of a build's flow engine
    time); a connection object keeps nothing between calls (each runs its
    own transaction on the engine) and closing one does nothing."""

    def __init__(self, engine):
        super().__init__({}, engine=engine)
        self._connection = None
        self._connection_lock = threading.Lock()

    def get_connection(self):
        with self._connection_lock:
            if self._connection is None:
                self._connection = _Connection(super().get_connection())
            return self._connection


class _Connection:
    """TaskFlow's connection, without the saves that change nothing but a
    task's progress: the engine saves a task's detail as its state
    changes, then again with its progress (0 as it starts, 1 as it ends),
    and nothing reads that progress back (a build's is its record's).
    Half of a flow's saves, each a transaction reading the row and
    writing it."""

    def __init__(self, connection):
        self._connection = connection
        # the last detail each thread saved (the engine saves a progress
        # right after the state change of the same task, in its thread)
        self._last = threading.local()

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def update_atom_details(self, atom_detail):
        saving = _without_progress(atom_detail)
        if getattr(self._last, "saved", None) == saving:
            return atom_detail
        saved = self._connection.update_atom_details(atom_detail)
        self._last.saved = saving
        return saved


def _without_progress(atom_detail):
    """``atom_detail`` as a dict, without its progress."""
    found = atom_detail.to_dict()
    found["meta"] = {key: value for key, value in (found["meta"] or {}).items()
                     if key not in _PROGRESS_KEYS}
    return found

"""TaskFlow's persistence of build flows in the records' database."""
import threading

from taskflow.persistence.backends import impl_sqlalchemy


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
                self._connection = super().get_connection()
            return self._connection

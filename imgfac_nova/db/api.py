"""One database: oslo.db's enginefacade on a connection URL, with the
transactions the image store needs and errors as one line without the
URL's password (:mod:`imgfac_nova.db.errors`).

Writers serialize on the rows they change: ``SELECT ... FOR UPDATE`` on
MySQL/MariaDB and PostgreSQL; SQLite has no row locks, so its write
transactions start with ``BEGIN IMMEDIATE`` (the database's write lock,
taken before the first read) and wait up to :data:`SQLITE_BUSY_TIMEOUT`
for another process's writer (one process's writers queue on a lock
first); WAL journaling lets readers go on meanwhile. A commit to SQLite
is not flushed to the disk (``synchronous = NORMAL``): it survives the
process (a build killed with ``kill -9`` resumes from it), and a power loss
at most takes the last commits back (the database stays whole; a build
then runs a step again, which adopts what the step made). A process keeps
its connections to an SQLite file open between transactions (oslo.db
opens one a transaction), as it does those to a server.
"""
import atexit
import contextlib
import os
import threading

import sqlalchemy as sa
from oslo_db import exception as db_exception
from oslo_db.sqlalchemy import enginefacade

from imgfac_nova.db import errors

#: Seconds an SQLite writer waits for another writer's transaction.
SQLITE_BUSY_TIMEOUT = 60
#: Connections to an SQLite file a process keeps open between transactions.
SQLITE_POOL_SIZE = 4
#: Execution option marking a connection whose transaction writes.
_IMMEDIATE = "imgfac_nova_sqlite_immediate"


class _Context:
    """What enginefacade keeps its per-thread transaction state on."""


class Database:
    """The database at ``url``; ``options`` are further ``[database]``
    options of oslo.db (``max_retries``, ``max_pool_size``, ...)."""

    def __init__(self, url, **options):
        self.url = url
        self.redacted_url = errors.redact(url)
        self._facade = enginefacade.transaction_context()
        # (thread_checkin yields to eventlet after each transaction; no
        # eventlet here, and the sleep(0) hands the GIL away for nothing)
        self._facade.configure(connection=url, thread_checkin=False,
                               **options)
        self._facade.append_on_engine_create(_prepare_engine)
        self._connected = False
        # SQLite: this process's writers queue here rather than in SQLite's
        # busy handler, whose sleeps grow to 100 ms. (Reentrant: a writer
        # nested in a writer of the same thread then fails on SQLite's
        # busy timeout instead of hanging.)
        self._write_lock = threading.RLock() if self.is_sqlite else \
            contextlib.nullcontext()

    @property
    def is_sqlite(self):
        return self.url.startswith("sqlite")

    @contextlib.contextmanager
    def writer(self):
        """A session in a write transaction, committed at the end."""
        with self._write_lock, self._errors(), \
                self._facade.writer.using(_Context()) as session:
            if self.is_sqlite:
                session.connection(execution_options={_IMMEDIATE: True})
            yield session

    @contextlib.contextmanager
    def reader(self):
        """A session in a read-only transaction."""
        with self._errors(), self._facade.reader.using(_Context()) as session:
            yield session

    def flow_engine(self):
        """The engine for TaskFlow's persistence of build flows, in this
        database: on SQLite each of its transactions takes the write lock
        first, as the store's writers do (a read that later writes would
        fail on a concurrent writer's commit instead of waiting)."""
        engine = self._facade.writer.get_engine()
        if self.is_sqlite:
            return engine.execution_options(**{_IMMEDIATE: True})
        return engine

    @contextlib.contextmanager
    def connection(self):
        """A connection in a write transaction, committed at the end (for
        migrations: on SQLite it holds the write lock throughout)."""
        with self._write_lock, self._errors():
            engine = self._facade.writer.get_engine()
            with engine.connect() as conn:
                if self.is_sqlite:
                    conn = conn.execution_options(**{_IMMEDIATE: True})
                with conn.begin():
                    yield conn

    @contextlib.contextmanager
    def _errors(self):
        """Errors as :class:`errors.DatabaseError`: until a transaction has
        worked, any error is one of connecting."""
        try:
            yield
        except db_exception.DBDuplicateEntry as exc:
            raise errors.DuplicateEntry(errors.reason(exc)) from exc
        except (db_exception.DBError, sa.exc.SQLAlchemyError,
                ImportError) as exc:
            connected = self._connected and not isinstance(
                exc, db_exception.DBConnectionError)
            raise errors.failed(self.redacted_url, exc, connected) from exc
        self._connected = True


def _prepare_engine(engine):
    if engine.dialect.name != "sqlite":
        return
    if isinstance(engine.pool, sa.pool.NullPool):
        # oslo.db gives a file database no pool: each transaction would
        # open the file, set it up and close it (the last to close it in
        # a process also checkpoints the WAL)
        pool = engine.pool
        engine.pool = sa.pool.QueuePool(
            pool._creator, pool_size=SQLITE_POOL_SIZE, max_overflow=-1,
            dialect=pool._dialect, _dispatch=pool.dispatch)
    sa.event.listen(engine, "first_connect", _sqlite_wal)
    sa.event.listen(engine, "connect", _sqlite_connect)
    # oslo.db's own "begin" listener on the engine emits a plain BEGIN
    # unless the transaction has begun ("in_transaction"); a listener
    # on the Engine class runs before it (SQLAlchemy ignores
    # insert=True for engine events).
    if not sa.event.contains(sa.engine.Engine, "begin", _sqlite_begin):
        sa.event.listen(sa.engine.Engine, "begin", _sqlite_begin)


def _sqlite_wal(dbapi_connection, connection_record):
    # (kept in the file: once per process is enough)
    dbapi_connection.execute("PRAGMA journal_mode = WAL")


def _sqlite_connect(dbapi_connection, connection_record):
    dbapi_connection.execute("PRAGMA busy_timeout = %d"
                             % (SQLITE_BUSY_TIMEOUT * 1000))
    # (flushing each commit took 2.5 ms here, nearly all of an update)
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")


def _sqlite_begin(conn):
    if conn.dialect.name == "sqlite" and \
            conn.get_execution_options().get(_IMMEDIATE) and \
            "in_transaction" not in conn.info:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True


_databases = {}
_databases_lock = threading.Lock()


def _forget_connections():
    """In a forked child: leave the parent's pooled connections to the
    parent (SQLAlchemy's advice), and open the child's own."""
    for database in _databases.values():
        if database._facade.is_started:
            database._facade.writer.get_engine().dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections)


def close_all():
    """Close the pooled connections of every database of this process
    (each opens new ones when next used)."""
    with _databases_lock:
        databases = list(_databases.values())
    for database in databases:
        if database._facade.is_started:
            database._facade.writer.get_engine().dispose()


# A process closes its pools as it ends: SQLite then folds its write-ahead
# log back into the file and removes the -wal and -shm files beside it.
atexit.register(close_all)


def database(url, **options):
    """The process's one :class:`Database` for ``url`` (an engine and its
    connection pool per database, however many stores use it)."""
    key = (url, tuple(sorted(options.items())))
    with _databases_lock:
        if key not in _databases:
            _databases[key] = Database(url, **options)
        return _databases[key]

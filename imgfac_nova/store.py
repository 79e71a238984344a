"""The image store: image records and build logs in a database
(``[database] connection``; by default the SQLite file :data:`SQLITE_NAME`
in the store's directory), each image's local data (``<uuid>.body``) and a
copy of its build log (``<uuid>.log``) as files in that directory.

A record changes in one transaction that locks its row (see
:mod:`imgfac_nova.db.api`), so two threads or processes changing one
record never lose each other's changes, and a reader never sees half of a
change.
"""
import contextlib
import copy
import os
import re
import threading

from imgfac_nova import images

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                      r"[0-9a-f]{12}$")
#: The default database: an SQLite file in the store's directory.
SQLITE_NAME = "imgfac-nova.sqlite"


class StoreError(Exception):
    """A store operation failed; str() is one line."""


class NotFound(StoreError):
    pass


def default_path():
    """Where images live unless configured: system-wide for root, else per user."""
    if os.geteuid() == 0:
        return "/var/lib/imgfac-nova/storage"
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "imgfac-nova", "storage")


def default_connection(path):
    """The database URL of the store in directory ``path`` by default."""
    return "sqlite:///" + os.path.join(os.path.abspath(path), SQLITE_NAME)


class ImageStore:
    """Image records in a database, their data and logs under one
    directory. ``database`` holds oslo.db's ``[database]`` options
    (``connection`` and the rest); without a connection the records are
    in the SQLite file :data:`SQLITE_NAME` under ``path``."""

    def __init__(self, path, database=None):
        self.path = os.path.abspath(path)
        self._options = dict(database or {})
        self.connection = self._options.pop("connection", None) or \
            default_connection(self.path)
        self._database = None
        self._flows = None
        self._open_lock = threading.Lock()

    def open(self):
        """Connect to the database, upgrade an SQLite schema, import the
        records of an older release's ``.meta`` files (once); the first
        use of a store does it too. Returns the store."""
        self._db()
        return self

    def sync(self):
        """Create or upgrade the database schema (whatever the backend),
        TaskFlow's tables for build flows too, then open the store and
        import the ``.meta`` files in its directory (even after the first
        import); returns the revisions ``(before, after)``."""
        from imgfac_nova.db import migration
        with _database_errors():
            revisions = migration.upgrade(self._connect())
        self._import_meta_files(self._db(), again=True)
        self.flow_persistence()
        return revisions

    def flow_persistence(self):
        """TaskFlow's persistence backend for build flows, in the records'
        database (its tables made or upgraded once per process)."""
        from taskflow import exceptions

        from imgfac_nova.db import flows
        database = self._db()
        with self._open_lock:
            if self._flows is None:
                backend = flows.FlowBackend(database.flow_engine())
                try:
                    with contextlib.closing(backend.get_connection()) as conn:
                        conn.upgrade()
                except exceptions.StorageFailure as exc:
                    raise StoreError("database %s: cannot keep build "
                                     "flows: %s" % (database.redacted_url,
                                                    exc)) from exc
                self._flows = backend
        return self._flows

    def schema_version(self):
        """The database schema's revision; None when it has none yet."""
        from imgfac_nova.db import migration
        with _database_errors():
            return migration.current(self._connect())

    def redacted_connection(self):
        """The database URL without its password."""
        from imgfac_nova.db import errors
        return errors.redact(self.connection)

    def _connect(self):
        # imgfac_nova.db is imported on first use: CLI verbs that need no
        # record start without SQLAlchemy.
        from imgfac_nova.db import api
        self._ensure_dir()
        return api.database(self.connection, **self._options)

    def _db(self):
        from imgfac_nova.db import migration
        if self._database is not None:
            return self._database
        with self._open_lock:
            if self._database is None:
                database = self._connect()
                with _database_errors():
                    migration.ensure(database)
                self._import_meta_files(database)
                self._database = database
        return self._database

    def _import_meta_files(self, database, again=False):
        from imgfac_nova.db import meta_files
        try:
            with _database_errors():
                meta_files.import_all(self.path, database, again)
        except OSError as exc:
            raise StoreError("cannot import the image records in %s: %s"
                             % (self.path, exc)) from exc

    @contextlib.contextmanager
    def _session(self, write=False):
        database = self._db()
        with _database_errors(), \
                database.writer() if write else database.reader() as session:
            yield session

    def _ensure_dir(self):
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create image store %s: %s"
                             % (self.path, exc.strerror)) from exc

    def _file(self, identifier, suffix):
        _check_id(identifier)
        return os.path.join(self.path, identifier + suffix)

    def body_path(self, identifier):
        """Where the local data of an image goes (it may not exist yet)."""
        return self._file(identifier, ".body")

    def log_path(self, identifier):
        """Where the local copy of an image's build log goes (on the host
        that ran the build)."""
        return self._file(identifier, ".log")

    def append_log(self, identifier, text):
        """Add ``text`` (whole lines) to the build log of ``identifier`` in
        the database."""
        from imgfac_nova.db import logs
        _check_id(identifier)
        with self._session(write=True) as session:
            logs.append(session, identifier, text)

    def read_log(self, identifier):
        """The build log of ``identifier`` as far as it was written to the
        database, wherever the build runs or ran ("" when none)."""
        from imgfac_nova.db import logs
        _check_id(identifier)
        with self._session() as session:
            return logs.read(session, identifier)

    def stale_temporaries(self):
        """Temporary record files that a writer of the file store (before
        the database) left when it was killed."""
        if not os.path.isdir(self.path):
            return []
        return [os.path.join(self.path, name)
                for name in sorted(os.listdir(self.path))
                if name.startswith(".tmp-")]

    def add(self, record):
        """Save a new record; its id must not be in use."""
        from imgfac_nova.db import records
        _check_id(record.identifier)
        record.updated = images.utcnow()
        with self._session(write=True) as session:
            if records.get(session, record.identifier) is not None:
                raise StoreError("image %s already exists" % record.identifier)
            records.insert(session, record.to_dict())
        return record

    def get(self, identifier):
        from imgfac_nova.db import records
        _check_id(identifier)
        with self._session() as session:
            row = records.get(session, identifier)
            if row is None:
                raise NotFound("no image with id %s" % identifier)
            return _record(row)

    def modify(self, identifier, change):
        """Call ``change(record)`` on the stored record and save it, in one
        transaction holding the record's row, so concurrent changes are
        never lost."""
        from imgfac_nova.db import records
        _check_id(identifier)
        with self._session(write=True) as session:
            row = records.get(session, identifier, lock=True)
            if row is None:
                raise NotFound("no image with id %s" % identifier)
            record = _record(row)
            before = copy.deepcopy(record.__dict__)
            change(record)
            record.updated = images.utcnow()
            # only what changed is written: a progress update does not
            # write the template (up to max_template_bytes) again
            records.update(session, record, [
                name for name in images.FIELDS
                if getattr(record, name) != before[name]])
        return record

    def update(self, identifier, **changes):
        """Set fields of a stored record; returns the new record."""
        for key in changes:
            if key not in images.FIELDS:
                raise AttributeError("image records have no field %r" % key)
        return self.modify(identifier, lambda record: record.__dict__.update(
            changes))

    def request_cancel(self, identifier):
        """Ask the build of ``identifier`` to stop, whichever process runs
        it (it polls :meth:`cancel_requested`)."""
        from imgfac_nova.db import records
        _check_id(identifier)
        with self._session(write=True) as session:
            if not records.request_cancel(session, identifier):
                raise NotFound("no image with id %s" % identifier)

    def cancel_requested(self, identifiers):
        """The ids among ``identifiers`` whose builds were asked to stop."""
        from imgfac_nova.db import records
        with self._session() as session:
            return records.cancel_requested(session, identifiers)

    def list(self, query=None, fields=None):
        """Records matching ``query`` (field -> value; another key is a
        property), oldest first. With ``fields`` (names of record fields),
        only those are read, with the identifier, type, status and
        created time: the records' other fields are None."""
        with self._session() as session:
            return self._query(session, query, fields)

    def list_once(self, query=None, fields=None):
        """:meth:`list`, for a process that lists records and ends: on a
        connection of its own, without the engine the store's other uses
        share (see :mod:`imgfac_nova.db.read_once`). A store not opened
        before, or whose schema needs an upgrade, is opened first."""
        from imgfac_nova.db import meta_files
        from imgfac_nova.db import migration
        from imgfac_nova.db import read_once
        if self._database is None and meta_files.finished(self.path):
            with _database_errors(), \
                    read_once.connection(self.connection) as conn:
                if migration.of_connection(conn) == migration.HEAD:
                    return self._query(conn, query, fields)
        return self.list(query, fields)

    def _query(self, session, query, fields):
        from imgfac_nova.db import records
        try:
            return records.query(session, query or {}, fields)
        except (TypeError, ValueError) as exc:
            raise StoreError("corrupt image record in %s: %s" % (
                self.redacted_connection(), exc)) from exc

    def remove(self, identifier):
        """Delete the record, its data and its build log."""
        from imgfac_nova.db import logs
        from imgfac_nova.db import records
        for suffix in (".body", ".log"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(identifier, suffix))
        with self._session(write=True) as session:
            records.delete(session, identifier)
            logs.delete(session, identifier)


@contextlib.contextmanager
def _database_errors():
    from imgfac_nova.db import errors
    try:
        yield
    except errors.DuplicateEntry as exc:
        raise StoreError("image already exists: %s" % exc) from exc
    except errors.DatabaseError as exc:
        raise StoreError(str(exc)) from exc


def _check_id(identifier):
    if not _UUID_RE.match(identifier or ""):
        raise NotFound("no image with id %r (an id is a UUID)" % identifier)


def _record(row):
    from imgfac_nova.db import records
    try:
        return records.record(row)
    except (TypeError, ValueError) as exc:
        raise StoreError("corrupt image record %s: %s"
                         % (row.identifier, exc)) from exc

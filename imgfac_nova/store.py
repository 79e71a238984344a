"""The image store: ``<uuid>.meta``, ``<uuid>.body`` and ``<uuid>.log`` files
in one directory.

Writes are atomic (a temporary file renamed over the old one), so a reader never
sees a half-written record. Read-modify-write updates hold the store's lock
(``fcntl.flock`` on ``.lock``; updates are short), so two processes sharing a store
do not lose each other's changes.
"""
import contextlib
import fcntl
import json
import os
import re
import tempfile

from imgfac_nova import images

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                      r"[0-9a-f]{12}$")


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


class ImageStore:
    """Image records and their data under one directory."""

    def __init__(self, path):
        self.path = os.path.abspath(path)

    def _ensure_dir(self):
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create image store %s: %s"
                             % (self.path, exc.strerror)) from exc

    def _file(self, identifier, suffix):
        if not _UUID_RE.match(identifier or ""):
            raise NotFound("no image with id %r (an id is a UUID)" % identifier)
        return os.path.join(self.path, identifier + suffix)

    def body_path(self, identifier):
        """Where the local data of an image goes (it may not exist yet)."""
        return self._file(identifier, ".body")

    def log_path(self, identifier):
        """Where the build log of an image goes."""
        return self._file(identifier, ".log")

    @contextlib.contextmanager
    def _locked(self):
        self._ensure_dir()
        fd = os.open(os.path.join(self.path, ".lock"), os.O_CREAT | os.O_RDWR,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, record):
        record.updated = images.utcnow()
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-",
                                   suffix=".meta")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record.to_dict(), handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._file(record.identifier, ".meta"))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def stale_temporaries(self):
        """Temporary files a killed writer left: every write holds the
        store's lock while its temporary file exists, so any found with the
        lock held are stale."""
        if not os.path.isdir(self.path):
            return []
        with self._locked():
            return [os.path.join(self.path, name)
                    for name in sorted(os.listdir(self.path))
                    if name.startswith(".tmp-")]

    def add(self, record):
        """Save a new record; its id must not be in use."""
        with self._locked():
            if os.path.exists(self._file(record.identifier, ".meta")):
                raise StoreError("image %s already exists" % record.identifier)
            self._write(record)
        return record

    def get(self, identifier):
        path = self._file(identifier, ".meta")
        try:
            with open(path) as handle:
                return images.ImageRecord.from_dict(json.load(handle))
        except FileNotFoundError:
            raise NotFound("no image with id %s in %s"
                           % (identifier, self.path)) from None
        except (ValueError, TypeError) as exc:
            raise StoreError("corrupt image record %s: %s" % (path, exc)) from exc

    def modify(self, identifier, change):
        """Call ``change(record)`` on the stored record and save it, all under
        the store lock, so concurrent changes are never lost."""
        with self._locked():
            record = self.get(identifier)
            change(record)
            self._write(record)
            return record

    def update(self, identifier, **changes):
        """Set fields of a stored record; returns the new record."""
        for key in changes:
            if key not in images.FIELDS:
                raise AttributeError("image records have no field %r" % key)
        return self.modify(identifier, lambda record: record.__dict__.update(
            changes))

    def list(self, query=None):
        """Records matching ``query`` (field -> value), oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if not name.endswith(".meta") or name.startswith("."):
                continue
            try:
                record = self.get(name[:-len(".meta")])
            except NotFound:
                continue  # deleted while we were listing
            if record.matches(query or {}):
                found.append(record)
        return sorted(found, key=lambda r: (r.created, r.identifier))

    def remove(self, identifier):
        """Delete the record, its data and its build log."""
        with self._locked():
            for suffix in (".body", ".log", ".meta"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(identifier, suffix))

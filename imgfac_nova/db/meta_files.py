"""The one-time import of a file store's records: the ``<uuid>.meta`` JSON
files that releases before the database wrote beside ``<uuid>.body`` and
``<uuid>.log``.

Each record goes into the database whole (keys this release does not know
go to the row's ``extra``), then its file moves to :data:`IMPORTED`, so it
is imported once; the image data and build logs stay where they are. The
store's ``.lock`` (which those releases locked too) keeps two processes
from importing at once. Once no record is left to import, :data:`DONE`
says so: opening a store then lists no directory of thousands of image
files (``imgfac-nova-manage db sync`` still looks).
"""
import contextlib
import fcntl
import json
import logging
import os
import re

from imgfac_nova import images
from imgfac_nova.db import errors
from imgfac_nova.db import records

LOG = logging.getLogger(__name__)

#: Where imported ``.meta`` files go, under the store's directory.
IMPORTED = "imported-meta"
#: The file, in the store's directory, made once its records are imported.
DONE = ".meta-imported"
_META_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                      r"[0-9a-f]{12}\.meta$")


def finished(directory):
    """Whether :data:`DONE` says ``directory``'s records were imported."""
    return os.path.exists(os.path.join(directory, DONE))


def pending(directory):
    """The ``.meta`` files in ``directory`` not imported yet."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name for name in names
                  if name.endswith(".meta") and _META_RE.match(name))


@contextlib.contextmanager
def _locked(directory):
    fd = os.open(os.path.join(directory, ".lock"), os.O_CREAT | os.O_RDWR,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mark_done(path):
    try:
        with open(path, "a"):
            pass
    except OSError as exc:  # (a store this user may only read)
        LOG.debug("Not marking the .meta import done (%s): %s", path, exc)


def import_all(directory, database, again=False):
    """Import the records of ``directory``'s ``.meta`` files into
    ``database`` unless :data:`DONE` says they were (``again``: look all the
    same); returns how many were imported. A file that is not a record
    stays where it is, with a warning (and it is looked at again next
    time)."""
    done_marker = os.path.join(directory, DONE)
    if not again and finished(directory):
        return 0
    if not pending(directory):
        _mark_done(done_marker)
        return 0
    done = os.path.join(directory, IMPORTED)
    imported = 0
    with _locked(directory):
        os.makedirs(done, mode=0o700, exist_ok=True)
        with database.reader() as session:
            present = records.identifiers(session)
        found = []
        for name in pending(directory):
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
                if not isinstance(data, dict) or \
                        data.get("identifier") != name[:-len(".meta")]:
                    raise ValueError("it holds no record of that id")
                images.ImageRecord.from_dict(data)
            except (OSError, ValueError, TypeError) as exc:
                LOG.warning("Not importing the image record %s: %s", path,
                            exc)
                continue
            found.append((str(data.get("created")), name, path, data))
        # in the order the file store listed them (created, then id), which
        # the rows' ids keep
        for _, name, path, data in sorted(found):
            if data["identifier"] not in present:
                # One transaction per record: a record that fails leaves
                # the others in and its own file in place.
                try:
                    with database.writer() as session:
                        records.insert(session, data)
                except errors.DuplicateEntry:
                    pass  # imported by a process that held no lock
                except errors.DatabaseError as exc:
                    LOG.warning("Not importing the image record %s: %s",
                                path, exc)
                    continue
            os.replace(path, os.path.join(done, name))
            imported += 1
        if not pending(directory):
            _mark_done(done_marker)
    if imported:
        LOG.warning("Imported %d image record(s) from the .meta files in %s "
                    "into the database %s; the files are now in %s",
                    imported, directory, database.redacted_url, done)
    return imported

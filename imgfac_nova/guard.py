"""What a sweep must never touch, decided in one place.

:meth:`Guard.protects` (calling the guard does the same) is the one
predicate every plugin's sweep asks before removing a leftover: a running
build's resources, a finished build's result, a JEOS cache entry, and anything
whose owning process is still alive (the "host:pid" builds tag their resources
with, so a sweep from another image store leaves them alone too) stay.
"""
import dataclasses
import datetime
import os
import socket

from oslo_utils import timeutils

from imgfac_nova import images
from imgfac_nova import resume
from imgfac_nova import store as store_mod
from novaimagebuilder import sweep

#: How the error of a build whose process died begins.
ENDED = "the build process ended unexpectedly"


def ended_error(record):
    """The error of the active ``record`` whose process died, naming the
    step it was at."""
    return "%s at %d %%: %s" % (ENDED, record.percent_complete,
                                record.activity)


def owner_pid(record):
    """The pid of the process running ``record``'s build when it runs on this
    host, else None."""
    return local_pid(record.worker)


def local_pid(owner):
    """The pid in a "host:pid" owner when the host is this one, else None."""
    host, _, pid = (owner or ":").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def alive(pid):
    """True when a process ``pid`` exists (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def results(record):
    """Ids of what a finished build made and keeps (its Glance or provider
    image, its data)."""
    found = {record.properties.get(images.GLANCE_ID_PROPERTY),
             record.properties.get("glance_image_id"),
             record.identifier_on_provider, record.data}
    return found - {None}


class Guard:
    """Keeps what must not be swept. ``running(record)`` says whether an
    active record's build is still running. One whose process is gone may
    still be resumed for ``max_age`` hours after its last change (0: no
    limit; None: none may; see :mod:`imgfac_nova.resume`): its resources
    stay, as do those
    of a build this store does not know whose newest resource is younger
    (another store's build, which may be resumed there). ``ended(record)``,
    when given, is called for one that may not be resumed (the builder
    marks it FAILED; a dry run gives none, so nothing changes). Either way
    the guard counts such a build as failed."""

    def __init__(self, store, running, ended=None, max_age=None):
        self._store = store
        self._running = running
        self._max_age = max_age
        self._ended = ended or (lambda record: None)
        self._records = {}
        self._live = set()
        self._waiting = set()
        self._results = set()
        for record in store.list():
            self._learn(record)

    def _learn(self, record):
        if record.status in images.ACTIVE_STATUSES:
            if self._running(record):
                self._live.add(record.identifier)
            elif self._max_age is not None and resume.resumable(
                    record, self._max_age):
                self._waiting.add(record.identifier)
            else:
                self._ended(record)
                record = dataclasses.replace(
                    record, status=images.FAILED, status_detail={
                        "activity": record.activity,
                        "error": ended_error(record)})
        elif record.status == images.COMPLETE:
            self._results |= results(record)
        self._records[record.identifier] = record

    def failed(self):
        """The failed image records, as this sweep sees them (builds whose
        process died included)."""
        return [record for record in self._records.values()
                if record is not None and record.status == images.FAILED]

    def _record(self, build):
        if build is None:
            return None
        if build not in self._records:
            # A build that started after the sweep did: its record exists
            # before any of its resources do.
            try:
                self._learn(self._store.get(build))
            except store_mod.NotFound:
                self._records[build] = None
        return self._records[build]

    @staticmethod
    def _owner_runs(owner, record):
        """Whether the "host:pid" owner may still be building. Another host's
        process cannot be checked from here: it counts as running unless
        this store knows the build is over."""
        pid = local_pid(owner)
        if pid is not None:
            return alive(pid)
        return record is None or record.status in images.ACTIVE_STATUSES

    def _recent(self, created):
        if self._max_age is None:
            return False
        if not self._max_age:
            return True
        age = timeutils.utcnow(with_timezone=True) - timeutils.parse_isotime(
            created)
        return age <= datetime.timedelta(hours=self._max_age)

    def __call__(self, leftover):
        return self.protects(leftover)

    def protects(self, leftover):
        """Why ``leftover`` must stay, or None when it may be removed."""
        record = self._record(leftover.build)
        if leftover.build in self._live:
            return "build %s is running" % leftover.build
        if leftover.build in self._waiting:
            return "build %s can be resumed ('imgfac-nova resume %s', or " \
                "'--abandon' to give it up)" % (leftover.build, leftover.build)
        if leftover.owner and self._owner_runs(leftover.owner, record):
            return "its process %s is alive" % leftover.owner
        if record is None and leftover.created and self._recent(
                leftover.created):
            return "build %s is not in this store and may still be " \
                "resumed where it is (resume_max_age)" % leftover.build
        if leftover.id in self._results:
            return "it is the result of a finished build"
        if leftover.role == sweep.JEOS_CACHE:
            return "it is a JEOS cache entry"
        if leftover.role == sweep.RESULT and (
                record is None or record.status != images.FAILED):
            return "it is the result of a build this store does not know " \
                "as failed"
        return None

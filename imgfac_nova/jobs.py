"""A running build: its context (what a plugin is handed), the job that runs
its steps in a thread and watches for cancel requests, the pool of build
slots, and its build log."""
import contextlib
import logging
import threading

from imgfac_nova import images
from novaimagebuilder import errors
from novaimagebuilder import private
from novaimagebuilder import scrub
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: Seconds between a running job's looks for a cancel request.
CANCEL_POLL = 2.0
#: Seconds between a running build's writes of its new log lines to the
#: database (one write a batch, off the build's thread).
LOG_BATCH = 2.0


class BuildCancelled(errors.Cancelled):
    """The build was interrupted (Ctrl-C, SIGTERM or a cancel request)."""


class BuildContext:
    """What a plugin gets to report progress and results for one image."""

    def __init__(self, store, identifier, cancel_event, on_change=None,
                 url_check=None, checkpoint=None, claim=None):
        self._store = store
        self.identifier = identifier
        #: Asked between the build's steps whether it may go on (a jobboard
        #: worker that lost its claim or stops says no: the build raises
        #: errors.HandedBack, undoing nothing), or None.
        self.checkpoint = checkpoint
        #: Asked before each action in the cloud whether this process still
        #: holds the build's claim (the build stops there when not:
        #: errors.HandedBack), or None.
        self.claim = claim
        #: With a checkpoint: whether this process still drives the build
        #: (no other took it over: its record names this one), asked
        #: before anything is undone or the build is failed; else None.
        self.owned = None
        #: Vets the URLs the build opens (an API caller's), or None.
        self.url_check = url_check
        self._cancel = cancel_event
        self._on_change = on_change or (lambda record: None)
        self.body_path = store.body_path(identifier)
        self._shown = None

    @property
    def flow_persistence(self):
        """Where the build's flow keeps its tasks' results (TaskFlow's
        backend in the records' database), opened when a build first asks:
        builds that run no flow never load TaskFlow."""
        return self._store.flow_persistence()

    @property
    def cancelled(self):
        return self._cancel.is_set()

    @property
    def cancel_event(self):
        """The threading.Event set when the build must stop."""
        return self._cancel

    def check_cancelled(self):
        """Raise BuildCancelled when the build has been asked to stop."""
        if self._cancel.is_set():
            raise BuildCancelled()

    def _update(self, **changes):
        self._changed(self._store.update(self.identifier, **changes))

    def _changed(self, record):
        self._on_change(record)

    def progress(self, percent, activity):
        """Record that the build is ``percent`` done and doing ``activity``;
        the build log gets each change, with the record's percentage."""
        percent = max(0, min(100, int(percent)))
        activity = scrub.scrub(activity)
        if (percent, activity) != self._shown:
            self._shown = (percent, activity)
            LOG.info("%d%% %s", percent, activity)
        self._update(status=images.BUILDING, percent_complete=percent,
                     status_detail={"activity": activity, "error": None})

    def get_property(self, name):
        """The image's property ``name`` (None when it has none)."""
        return self._store.get(self.identifier).properties.get(name)

    def set_property(self, name, value):
        self.set_properties({name: value})

    def set_properties(self, values):
        """Set the properties ``values`` (name -> value) in one change of
        the record."""
        values = {name: scrub.scrub(value) for name, value in values.items()}
        self._changed(self._store.modify(
            self.identifier, lambda record: record.properties.update(values)))

    def set_icicle(self, xml):
        self._update(icicle=xml)

    def set_identifier_on_provider(self, identifier):
        self._update(identifier_on_provider=identifier)

    def set_provider_account_identifier(self, account):
        self._update(provider_account_identifier=account)

    def add_timings(self, timings):
        """Record the seconds spent on steps, in one change of the record:
        ``{step: {"cloud": 12.5, "orchestrator": 0.4}}``."""
        self._changed(self._store.modify(
            self.identifier, lambda record: record.timings.update(timings)))


class Job:
    """Images being built by one worker thread, in order (base, target, provider)."""

    def __init__(self, records, run):
        self.records = records
        self.cancel_event = threading.Event()
        # An Event, not Thread.join(): join() interrupted by a signal can
        # report a live thread as finished.
        self._done = threading.Event()

        def body():
            try:
                run(self)
            finally:
                self._done.set()
        self._thread = threading.Thread(target=body, daemon=True,
                                        name="build-%s" % records[-1].identifier)

    @property
    def image(self):
        """The last image of the chain: the one that was asked for."""
        return self.records[-1]

    def start(self):
        self._thread.start()
        return self

    def cancel(self):
        self.cancel_event.set()

    def watch(self, store):
        """Cancel the job when any process asks the store to stop one of
        its images (polled every :data:`CANCEL_POLL` seconds while it
        runs)."""
        ids = [record.identifier for record in self.records]

        def asked():
            try:
                return store.cancel_requested(ids)
            except Exception as exc:  # the next poll tries again
                LOG.debug("Reading the cancel requests of %s: %s", ids, exc)
                return set()

        def poll():
            try:
                found = waiter.wait_for(
                    "a cancel request of image %s" % ids[-1], asked, bool,
                    timeout=float("inf"), cancel=self._done,
                    interval=CANCEL_POLL, max_interval=CANCEL_POLL)
            except errors.Cancelled:
                return  # the job ended
            LOG.warning("Stopping the build of %s: asked to stop (a delete "
                        "or a cancel)", ", ".join(sorted(found)))
            self.cancel()
        threading.Thread(target=poll, daemon=True,
                         name="cancel-watch-%s" % ids[-1]).start()

    def wait(self, timeout=None):
        """True when the build has finished."""
        return self._done.wait(timeout)


class BuildSlots:
    """At most ``size`` jobs run at once; the others wait in arrival order."""

    def __init__(self, size):
        self.size = size
        self._running = 0
        self._queue = []
        self._changed = threading.Condition()

    def enter(self, job):
        """Queue ``job``; returns at once (the slot is taken by :meth:`hold`)."""
        with self._changed:
            self._queue.append(job)

    @contextlib.contextmanager
    def hold(self, job):
        """Wait for ``job``'s turn and a free slot, then run the body in it.

        Raises BuildCancelled when the job is cancelled while it waits.
        """
        with self._changed:
            if job not in self._queue:
                self._queue.append(job)
            while True:
                if job.cancel_event.is_set():
                    self._queue.remove(job)
                    self._changed.notify_all()
                    raise BuildCancelled("cancelled before it started")
                if self._queue[0] is job and self._running < self.size:
                    break
                self._changed.wait(0.5)
            self._queue.pop(0)
            self._running += 1
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


@contextlib.contextmanager
def build_log(store, identifier):
    """Copy what this thread logs (INFO and up, with tracebacks, URLs
    scrubbed) to the build log of ``identifier``: in the store's database,
    where every process reads it (ImageStore.read_log), and in the local
    file ``store.log_path(identifier)``, readable by its owner only."""
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s")
    thread = threading.get_ident()
    handlers = [logging.FileHandler(private.file(store.log_path(identifier))),
                _DatabaseLog(store, identifier)]
    root = logging.getLogger()
    for handler in handlers:
        handler.setLevel(logging.INFO)
        handler.setFormatter(formatter)
        scrub.install(handler)
        handler.addFilter(lambda record: record.thread == thread)
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


class _DatabaseLog(logging.Handler):
    """Keeps the lines of a build's log and writes them to the store's
    database in batches, every :data:`LOG_BATCH` seconds from a thread of
    its own and when closed: logging a line costs the build no database
    write. A batch that cannot be written is kept for the next."""

    def __init__(self, store, identifier):
        super().__init__()
        self._store, self._identifier = store, identifier
        self._lines = []
        self._lines_lock = threading.Lock()
        self._closed = threading.Event()
        self._writer = threading.Thread(
            target=self._write_batches, daemon=True,
            name="build-log-%s" % identifier)
        self._writer.start()

    def emit(self, record):
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self._lines_lock:
            self._lines.append(line)

    def _write(self):
        with self._lines_lock:
            lines, self._lines = self._lines, []
        if not lines:
            return True
        try:
            self._store.append_log(self._identifier, "".join(lines))
            return True
        except Exception as exc:  # the database is down: try again later
            LOG.debug("Writing the build log of %s: %s", self._identifier,
                      exc)
            with self._lines_lock:
                self._lines[:0] = lines
            return False

    def _write_batches(self):
        while not self._closed.wait(LOG_BATCH):
            self._write()

    def close(self):
        if not self._closed.is_set():
            self._closed.set()
            self._writer.join()
            if not self._write():
                LOG.warning("The end of the build log of %s could not be "
                            "written to the database; it is in %s",
                            self._identifier,
                            self._store.log_path(self._identifier))
        super().close()

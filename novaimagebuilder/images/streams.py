"""Image bytes as they move: hashed beside the transfer, its progress
reported without holding the bytes up, read in large chunks."""
import hashlib
import logging
import queue
import threading
import time

from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

CHUNK = 1024 ** 2
#: Glance's default hashing algorithm; what we compute while uploading.
DEFAULT_HASH = "sha512"


class StreamHash:
    """A hashlib digest fed from a worker thread: ``update`` hands the chunk
    over and returns (hashlib releases the GIL on large chunks, so hashing
    runs beside the transfer); at most ``depth`` chunks wait in between."""

    def __init__(self, algorithm, depth=8):
        self._digest = hashlib.new(algorithm)
        self._chunks = queue.Queue(maxsize=depth)
        self._result = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hash-%s" % algorithm)
        self._thread.start()

    def _run(self):
        for chunk in iter(self._chunks.get, None):
            self._digest.update(chunk)

    def update(self, chunk):
        self._chunks.put(chunk)

    def close(self):
        """Stop the worker (after the chunks handed over so far)."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def hexdigest(self):
        if self._result is None:
            self.close()
            self._result = self._digest.hexdigest()
        return self._result


class Progress:
    """``progress(percent, bytes)`` of a transfer, called with the bytes
    moved so far: when the percentage changes, at most once every
    :data:`INTERVAL` seconds, and at 100. A report may be a database write
    (one a percent took a quarter of a fast download's time): it is made
    by a thread of its own, so the bytes do not wait for it, but for the
    last (100), made before the transfer returns. :meth:`close` stops the
    thread."""

    INTERVAL = 1.0

    def __init__(self, callback, size):
        self.callback, self.size = callback, size
        self._reported, self._at = -1, -self.INTERVAL
        self._latest, self._made = None, -1
        self._lock = threading.Lock()  # one report at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._thread = None

    def __call__(self, done):
        if self.callback is None:
            return
        percent = 100 * done // self.size if self.size else 100
        now = time.monotonic()
        if percent != self._reported and (
                percent == 100 or now - self._at >= self.INTERVAL):
            self._reported, self._at = percent, now
            if percent == 100:
                self._report((percent, done))
                return
            self._latest = (percent, done)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="progress")
                self._thread.start()
            self._wake.set()

    def _run(self):
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            latest, self._latest = self._latest, None
            if latest is not None and not self._closed:
                try:
                    self._report(latest)
                except Exception:
                    LOG.exception("Reporting the transfer's progress failed")

    def _report(self, report):
        with self._lock:
            if report[0] > self._made:  # never after a later one
                self._made = report[0]
                self.callback(*report)

    def close(self):
        """Stop reporting (a report being made is waited for)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()


class HashingReader:
    """Reads a file for an upload: hashes it, reports progress, stops when
    the build is cancelled. Reads are :data:`CHUNK` at least (glanceclient
    asks for 64 KiB at a time: 16 times the work per byte)."""

    def __init__(self, handle, size, algorithm=DEFAULT_HASH, progress=None,
                 cancel=None):
        self.handle = handle
        self.size = size
        self.digest = StreamHash(algorithm)
        self.done = 0
        self.progress = Progress(progress, size)
        self.cancel = cancel

    def read(self, size=-1):
        if self.cancel is not None and self.cancel.is_set():
            raise errors.Cancelled()
        data = self.handle.read(max(size or 0, CHUNK))
        self.digest.update(data)
        self.done += len(data)
        self.progress(self.done)
        return data

    def close(self):
        self.handle.close()
        self.digest.close()
        self.progress.close()

    def hexdigest(self):
        return self.digest.hexdigest()


def file_hash(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()

"""Glance images copied to another Glance (a provider push of an image
made in the cloud), their bytes moving through us as little as possible
(:func:`copy`); the download of their bytes (:func:`chunks`, which
:mod:`download` writes to a file).

What the destination Glance advertises in its import discovery
(``/v2/info/import``) decides the way:

- ``web-download``, when it is offered and the source image has an http(s)
  location (``direct_url`` or ``locations``, which a Glance shows only when
  its operator lets it): the destination fetches the bytes itself and none
  pass through us. When that import fails (the destination cannot reach
  the URL, or its import filtering refuses it), the stream below follows.
- otherwise the stream: one pass from the source's download to the
  destination's upload (:func:`glance.upload`, so the same choice of
  upload or image import, checks and clean-up), a reader thread filling a
  bounded queue (:data:`DEPTH` chunks of :data:`streams.CHUNK`: the memory
  used does not grow with the image), hashed and inspected as its
  ``disk_format`` on the way. A download whose connection drops is taken
  up where it stopped (an HTTP Range request), up to :data:`RESUMES`
  times; an upload whose connection drops starts again from the first
  byte (Glance keeps no part of it). The last chunk is held back until the
  bytes are checked: a source whose bytes are not what its hash says, or
  not its format, never becomes an image at the destination.
"""
import hashlib
import logging
import queue
import threading
from urllib import parse

import requests

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.images import glance
from novaimagebuilder.images import streams
from novaimagebuilder import retries

LOG = logging.getLogger(__name__)

#: Chunks between the download and the upload.
DEPTH = 8
#: Times a dropped download is taken up again in one transfer.
RESUMES = 5
_END = object()


def copy(source, image, destination, name, disk_format,
         container_format, where="the source cloud", method="auto",
         progress=None, cancel=None, timeout=3600, image_id=None,
         **create):
    """Copy the Glance ``image`` (as glanceclient read it) of the
    glanceclient ``source`` to a new image ``name`` of ``destination`` (or
    into its queued image ``image_id``); the active image (none is left
    when the copy fails). ``where`` names the source in messages;
    ``method``, ``progress``, ``cancel``, ``timeout`` and ``create``
    (visibility, min_disk, min_ram, properties, role) are
    :func:`glance.upload`'s."""
    url = web_location(image)
    if method == "auto" and url and \
            "web-download" in glance.import_methods(destination):
        found = _web_download(destination, image, url, name,
                              disk_format, container_format, cancel, timeout,
                              create, image_id)
        if found is not None:
            return found
        image_id = None  # deleted
    return glance.upload(destination, GlanceData(source, image, where),
                         name, disk_format, container_format,
                         method=method, progress=progress, cancel=cancel,
                         timeout=timeout, image_id=image_id, **create)


def same_bytes(image, copied):
    """Whether the Glance image ``copied`` holds ``image``'s bytes (see
    :func:`_check_same`)."""
    try:
        _check_same(image, copied)
    except errors.BuildError:
        return False
    return True


def web_location(image):
    """An http(s) URL of the image's bytes that Glance shows (None: none)."""
    urls = [image.get("direct_url")] + [
        location.get("url") for location in image.get("locations") or []
        if isinstance(location, dict)]
    for url in filter(None, urls):
        if parse.urlsplit(url).scheme in ("http", "https"):
            return url
    return None


def _web_download(destination, image, url, name, disk_format,
                  container_format, cancel, timeout, create, made=None):
    """The destination's copy of ``image`` fetched by itself from ``url``
    (into its queued image ``made``, else a new one); None (and no image)
    when the import fails."""
    create = dict(create)
    role = create.pop("role", glance.FINISHED)
    props = create.pop("properties", None) or {}
    if made is None:
        made = glance.create(destination, name, disk_format,
                             container_format,
                             create.get("visibility", "private"),
                             create.get("min_disk", 0),
                             create.get("min_ram", 0), props, cancel)
    LOG.info("Glance fetches %s into image %s itself (web-download)", url,
             made)
    try:
        try:
            retries.send_once(
                "asking Glance to fetch the image data",
                lambda: destination.images.image_import(
                    made, method="web-download", uri=url),
                lambda: True if destination.images.get(made).status in (
                    "importing", "active") else None, explain=glance.explain)
            active = glance.wait_active(destination, made, timeout, cancel)
        except errors.WaitTimeout:
            raise
        except errors.BuildError as exc:
            LOG.info("The web-download of %s failed (%s): streaming the "
                     "bytes instead", url, exc)
            glance.delete(destination, made)
            return None
        _check_same(image, active)
        return glance.finish(destination, made, name, role,
                             cloud.OWNER_TAG not in props, cancel)
    except BaseException:
        LOG.info("Deleting Glance image %s: its web-download failed", made)
        glance.delete_quietly(destination, made)
        raise


def _check_same(image, copied):
    """Fail in one line unless ``copied`` holds ``image``'s bytes (by their
    hash in the algorithm both have: the multihash, else MD5)."""
    for hash_key, algo_key in (("os_hash_value", "os_hash_algo"),
                               ("checksum", None)):
        if algo_key and image.get(algo_key) != copied.get(algo_key):
            continue
        if image.get(hash_key) and image.get(hash_key) == \
                copied.get(hash_key):
            return
        raise errors.BuildError(
            "Glance image %s does not hold the bytes of image %s: its %s is "
            "%s, the source's %s" % (copied.id, image.id, hash_key,
                                     copied.get(hash_key) or "missing",
                                     image.get(hash_key) or "missing"))


class GlanceData:
    """The bytes of a Glance image (``image``, read through the glanceclient
    ``source``) for :func:`glance.upload`, like its FileData."""

    def __init__(self, source, image, where):
        self.source, self.image, self.where = source, image, where
        self.size = image.get("size") or 0
        self.expected = expected_hash(image)
        self._check = None

    def check(self, disk_format, container_format, what):
        """The bytes are inspected as they stream (by each reader)."""
        self._check = (disk_format, what, container_format)

    def reader(self, progress, cancel):
        """A new :class:`Pipe` of the bytes from their start."""
        return Pipe(self, formats.Inspection(*self._check), progress, cancel)

    def digest(self, algorithm):
        """The source's hash of the bytes in ``algorithm`` (a pipe checked
        the bytes against it)."""
        if self.expected and self.expected[0] == algorithm:
            return self.expected[1]
        raise errors.BuildError(
            "the copy of Glance image %s cannot be checked: the destination "
            "hashes with %s, the source with %s" % (
                self.image.id, algorithm,
                self.expected[0] if self.expected else "nothing"))

    def chunks(self, offset):
        """The bytes from ``offset`` on."""
        return chunks(self.source, self.image.id, offset)


def chunks(client, image_id, offset=0):
    """The bytes of Glance image ``image_id`` from ``offset`` on (an HTTP
    Range request), in chunks of :data:`streams.CHUNK` (glanceclient's are
    64 KiB: 16 times the work per byte)."""
    # Through the keystoneauth session: glanceclient would %-encode the
    # Range header.
    adapter = client.http_client
    headers = {"Range": "bytes=%d-" % offset} if offset else {}
    answer = adapter.session.get(
        "%s/v2/images/%s/file" % (adapter.get_endpoint().rstrip("/"),
                                  image_id), headers=headers, stream=True)
    try:
        skip = offset if answer.status_code != 206 else 0
        for chunk in answer.iter_content(streams.CHUNK):
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                yield chunk
    finally:
        answer.close()


class Pipe:
    """A reader (``read``) of a Glance image's bytes for an upload, filled by
    a thread that downloads them (see the module); hashes, inspects, counts
    (``done``) and reports ``progress(percent, bytes)`` as HashingReader
    does."""

    def __init__(self, data, inspection, progress=None, cancel=None):
        self.data, self.size, self.done = data, data.size, 0
        self.progress = streams.Progress(progress, self.size)
        self.cancel = cancel
        self._inspection = inspection
        algorithms = {streams.DEFAULT_HASH}
        if data.expected and data.expected[0] in hashlib.algorithms_available:
            algorithms.add(data.expected[0])
        self._hashes = {a: streams.StreamHash(a) for a in algorithms}
        self._queue = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._held, self._ended = None, False
        self._thread = threading.Thread(
            target=self._fetch, daemon=True,
            name="download-%s" % data.image.id[:8])
        self._thread.start()

    def _fetch(self):
        offset, resumes = 0, 0
        while True:
            stream = self.data.chunks(offset)
            try:
                for chunk in stream:
                    if not self._put(chunk):
                        return
                    offset += len(chunk)
                if offset >= self.size:
                    self._put(_END)
                    return
                raise _ShortRead("the download ended at byte %d of %d"
                                 % (offset, self.size))
            except Exception as exc:
                if not _dropped(exc) or resumes >= RESUMES:
                    self._put(exc)
                    return
                resumes += 1
                LOG.info("Downloading Glance image %s from %s: the "
                         "connection dropped at byte %d (%s); taking it up "
                         "there (%d of %d)", self.data.image.id,
                         self.data.where, offset, glance.explain(exc),
                         resumes, RESUMES)
                if self._stop.wait(min(8.0, 0.5 * 2 ** resumes)):
                    return
            finally:
                stream.close()

    def _put(self, item):
        """Queue ``item``; False when the reader was closed meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                pass
        return False

    def read(self, size=-1):
        while not self._ended:
            if self.cancel is not None and self.cancel.is_set():
                raise errors.Cancelled()
            item = self._queue.get()
            if item is _END:
                self._ended = True
                self._verify()
            elif isinstance(item, BaseException):
                if isinstance(item, errors.BuildError):
                    raise item
                raise errors.BuildError(
                    "downloading Glance image %s from %s: %s" % (
                        self.data.image.id, self.data.where,
                        glance.explain(item))) from None
            else:
                self._take(item)
            held, self._held = self._held, None if self._ended else item
            if held is not None:
                return held
        return b""

    def _take(self, chunk):
        for digest in self._hashes.values():
            digest.update(chunk)
        if not self._inspection.decided:
            self._inspection.feed(chunk)
        self.done += len(chunk)
        self.progress(self.done)

    def _verify(self):
        """Before the last chunk goes: the bytes are the source's."""
        image = self.data.image
        if self.done != self.size:
            raise errors.BuildError(
                "Glance image %s on %s sent %d bytes, not its size %d"
                % (image.id, self.data.where, self.done, self.size))
        self._inspection.verdict()
        expected = self.data.expected
        if expected is None:
            LOG.warning("Glance image %s has no hash: the copy is checked "
                        "against the bytes read", image.id)
        elif expected[0] in self._hashes and \
                self._hashes[expected[0]].hexdigest() != expected[1]:
            raise errors.BuildError(
                "Glance image %s on %s arrived damaged: its %s is %s, the "
                "data's is %s" % (image.id, self.data.where, expected[0],
                                  expected[1],
                                  self._hashes[expected[0]].hexdigest()))

    def hexdigest(self):
        return self._hashes[streams.DEFAULT_HASH].hexdigest()

    def close(self):
        """Stop the download (the upload is over or failed)."""
        self._stop.set()  # the thread sees it within one put's timeout
        while not self._queue.empty():
            self._queue.get_nowait()
        for digest in self._hashes.values():
            digest.close()
        self.progress.close()


def expected_hash(image):
    """``(algorithm, hex digest)`` Glance holds for the image's data: its
    multihash, else the MD5 ``checksum`` of older images, else None."""
    if image.get("os_hash_value") and image.get("os_hash_algo"):
        return image["os_hash_algo"], image["os_hash_value"]
    if image.get("checksum"):
        return "md5", image["checksum"]
    return None


class _ShortRead(Exception):
    """The source closed the download before its end."""


def _dropped(exc):
    """True when a download failed on its connection (it may be taken up
    again): reset, cut short, timed out, or a gateway's 502/503/504."""
    return isinstance(exc, (_ShortRead, requests.exceptions.ConnectionError,
                            requests.exceptions.ChunkedEncodingError)) or \
        retries.lost(exc)

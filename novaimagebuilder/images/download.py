"""A Glance image's bytes down to a file (:func:`download`), in one pass at
the link's speed: the image's record is read beside the bytes, asked for
once the first bytes came (not before them: a request's latency, a good
part of a fast download on a loaded machine; nor at once with them: both
requests would have Glance validate a new token with Keystone), the bytes
are hashed beside their writing (:class:`streams.StreamHash`) with
Glance's default algorithm from the first byte, and progress is reported
by a thread of its own (:class:`streams.Progress`)."""
import concurrent.futures
import hashlib
import logging
import os

from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.images import glance
from novaimagebuilder.images import streams
from novaimagebuilder.images import transfer

LOG = logging.getLogger(__name__)


def download(client, image_id, path, progress=None, cancel=None):
    """Stream the data of Glance image ``image_id`` (glanceclient
    ``client``) to ``path``; checked against the image's hash and inspected
    as its ``disk_format``. Returns Glance's record of the image (a dict).
    ``progress(percent, bytes_received)`` is called as
    :class:`streams.Progress` says, from when the record came. Nothing is
    left at ``path`` on failure."""
    record = _Record(client, image_id)
    digest = streams.StreamHash(streams.DEFAULT_HASH)
    report = image = None
    done = 0
    try:
        with open(path, "wb") as handle:
            for chunk in transfer.chunks(client, image_id):
                if cancel is not None and cancel.is_set():
                    raise errors.Cancelled()
                digest.update(chunk)
                handle.write(chunk)
                done += len(chunk)
                if report is not None:
                    report(done)
                elif record.arrived():
                    image, report = _started(record.result(), path, progress)
                    report(done)
        if image is None:  # the record came after the bytes
            image, report = _started(record.result(), path, progress)
            report(done)
        _check(image, path, digest)
    except errors.BuildError:
        _remove(path)
        raise
    except BaseException as exc:
        _remove(path)
        if isinstance(exc, Exception):
            failure = record.exception()
            if failure is not None:  # e.g. no such image
                raise failure from None
            raise errors.BuildError("downloading Glance image %s: %s"
                                    % (image_id, glance.explain(exc))) from None
        raise
    finally:
        if report is not None:
            report.close()
        digest.close()
        record.close()
    return image


class _Record:
    """Glance's record of the image (a dict), read by a thread of its own
    from the first time it is asked about."""

    def __init__(self, client, image_id):
        self.client, self.image_id = client, image_id
        self._pool = self._future = None

    def _asked(self):
        if self._future is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="glance-record")
            self._future = self._pool.submit(
                glance.call, "reading Glance image %s" % self.image_id,
                _record, self.client, self.image_id)
        return self._future

    def arrived(self):
        """Whether the record came (the first call asks for it)."""
        return self._asked().done()

    def result(self):
        return self._asked().result()

    def exception(self):
        return self._asked().exception()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _started(image, path, progress):
    """Glance's record ``image`` arrived: log, and the progress reporter."""
    size = image.get("size") or 0
    LOG.info("Downloading Glance image %s (%d bytes) to %s", image["id"],
             size, path)
    return image, streams.Progress(progress if size else None, size)


def _check(image, path, digest):
    """The bytes at ``path`` (hashed by ``digest`` as they were written)
    are those of Glance's ``image``, and in its ``disk_format``."""
    expected = transfer.expected_hash(image)
    if expected is None:
        LOG.warning("Glance image %s has no hash: its data is not checked",
                    image["id"])
    else:
        if expected[0] == streams.DEFAULT_HASH:
            found = digest.hexdigest()
        else:  # another algorithm than Glance's default: read them again
            with open(path, "rb") as handle:
                found = hashlib.file_digest(handle, expected[0]).hexdigest()
        if found != expected[1]:
            raise errors.BuildError(
                "Glance image %s arrived damaged: its %s is %s, the data's "
                "is %s" % (image["id"], expected[0], expected[1], found))
    formats.inspect(path, image.get("disk_format"), "Glance image %s"
                    % image["id"], image.get("container_format") or "bare")


def _record(client, image_id):
    """Glance's record of image ``image_id`` (a dict), in one request
    (glanceclient's ``images.get`` first reads the image schema)."""
    adapter = client.http_client
    return adapter.session.get("%s/v2/images/%s" % (
        adapter.get_endpoint().rstrip("/"), image_id)).json()


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

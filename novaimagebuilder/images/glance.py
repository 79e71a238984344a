"""Moving image bytes in and out of Glance with python-glanceclient.

Uploads stream from a file (never whole in memory) through Glance's
interoperable image import (``glance-direct``: stage, then import) when the
cloud offers it, else the plain image upload; the bytes are hashed while they
are read and Glance's ``os_hash_algo`` / ``os_hash_value`` must match. The
image made is deleted again when the upload fails at any point, so a
failure leaves no image behind (downloads are :mod:`download`'s, copies
from another Glance :mod:`transfer`'s). Hashing runs in a thread beside
the transfer (:mod:`streams`), so it costs no time while the link is the
slower part. The bytes going up are inspected as their ``disk_format``
first (:func:`formats.inspect`).
"""
import logging
import os
import re
import socket

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.images import glance_put
from novaimagebuilder.images import streams
from novaimagebuilder import retries
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: Times the bytes are sent when the connection drops (the upload starts
#: again from the first byte: Glance keeps no part of it).
SENDS = 4
#: Seconds Glance may take to notice that an upload was cut.
SETTLE = 120
#: The image property marking an upload in progress (swept after a crash)
#: and then a finished image.
UPLOADING, FINISHED = "upload", "image"


def explain(exc):
    """One line for a glanceclient / keystoneauth exception."""
    code = getattr(exc, "code", None)
    if code == 401:
        return cloud.REFUSED
    if code == 403:
        return "Glance refused: %s (HTTP 403)" % _first_line(
            getattr(exc, "details", None) or exc)
    if isinstance(code, int):
        return "%s (HTTP %d)" % (_first_line(getattr(exc, "details", None)
                                             or exc), code)
    return cloud.explain(exc)


def _first_line(text):
    lines = str(text).strip().splitlines()
    return lines[0] if lines else "no details"


def call(what, function, *args, **kwargs):
    """Call Glance; an exception becomes a one-line BuildError."""
    try:
        return function(*args, **kwargs)
    except errors.BuildError:
        raise
    except Exception as exc:
        raise errors.BuildError("%s: %s" % (what, explain(exc))) from None


def client(session, endpoint=None, region=None, interface=None):
    """A Glance v2 client on a keystoneauth ``session``; ``endpoint`` replaces
    the catalog's Glance URL (its version, as openstacksdk's discovery
    gives it, is dropped: glanceclient adds its own)."""
    from glanceclient import client as glance_client
    kwargs = {"session": session}
    if endpoint:
        kwargs["endpoint_override"] = re.sub(r"/v2(\.\d+)?/?$", "", endpoint)
    if region:
        kwargs["region_name"] = region
    if interface:
        kwargs["interface"] = interface
    return glance_client.Client("2", **kwargs)


def of(conn):
    """The Glance client of an openstacksdk connection: its session, region
    and interface, and its image endpoint when the cloud's configuration
    names one (``image_endpoint_override`` in clouds.yaml)."""
    return client(conn.session, endpoint=conn.config.get_endpoint("image"),
                  region=conn.config.region_name,
                  interface=conn.config.interface)


def import_methods(glance):
    """The import methods the cloud offers (empty when it has no import)."""
    try:
        body = glance.images.get_import_info()
    except Exception as exc:
        LOG.info("Glance offers no image import: %s", explain(exc))
        return []
    return list((body.get("import-methods") or {}).get("value") or [])


def holds(image, path):
    """True when a Glance image's hash (os_hash_algo, os_hash_value) is
    that of the file ``path``."""
    algorithm = image.get("os_hash_algo")
    return bool(algorithm and image.get("os_hash_value") ==
                streams.file_hash(path, algorithm))


class FileData:
    """A file's bytes, for :func:`upload`; :mod:`novaimagebuilder.images.transfer`
    has another Glance image's (the same four members)."""

    def __init__(self, path):
        self.path, self.size = path, os.path.getsize(path)

    def check(self, disk_format, container_format, what):
        """Refuse bytes that are not a safe image in ``disk_format``."""
        formats.inspect(self.path, disk_format, what, container_format)

    def reader(self, progress, cancel):
        """A new HashingReader of the bytes from their start."""
        return streams.HashingReader(open(self.path, "rb"), self.size,
                                     progress=progress, cancel=cancel)

    def digest(self, algorithm):
        """The bytes' hex digest in ``algorithm``."""
        LOG.info("Hashing %s with %s, as Glance did", self.path, algorithm)
        return streams.file_hash(self.path, algorithm)


def upload(glance, data, name, disk_format, container_format,
           visibility="private", min_disk=0, min_ram=0, properties=None,
           method="auto", progress=None, cancel=None, timeout=3600,
           role=FINISHED, image_id=None):
    """Create the Glance image ``name`` from ``data`` (a file's path, or an
    object like :class:`FileData`); returns the active image. ``image_id``:
    the queued image to fill instead (made by an earlier run of the build:
    its properties are as that run made them).

    It either returns the active image or raises with no image left: a
    failure (or Ctrl-C) after the image was created deletes it. ``method``
    is ``auto`` (the plain upload, one pass; image import when Glance
    refuses the upload), ``glance-direct`` or ``upload``.
    ``progress(percent, bytes_sent)`` follows the bytes. Once the bytes are
    checked, the image's ``imgfac_role`` becomes ``role``.
    While the bytes move, the image carries this process as its owner, so a
    sweep from any image store leaves the upload alone. Bytes that are not
    a safe image in ``disk_format`` are refused before anything is created
    (streamed bytes: before their end reaches Glance).
    """
    if not hasattr(data, "reader"):
        data = FileData(data)
    data.check(disk_format, container_format, "the upload of %s" % name)
    props = dict(properties or {})
    owned_here = cloud.OWNER_TAG not in props
    if image_id is None:
        image_id = create(glance, name, disk_format, container_format,
                          visibility, min_disk, min_ram, props, cancel)
    try:
        return _fill(glance, image_id, data, name, method, progress, cancel,
                     timeout, role, owned_here)
    except BaseException:
        LOG.info("Deleting Glance image %s (%s): its upload failed", name,
                 image_id)
        delete_quietly(glance, image_id)
        raise


def _fill(glance, image_id, data, name, method, progress, cancel, timeout,
          role, owned_here):
    """Send ``data`` to the queued image, check that Glance holds its bytes
    and mark it finished; the active image."""
    stage = method == "glance-direct"
    offered = import_methods(glance) if stage else ()
    if stage and "glance-direct" not in offered:
        raise errors.BuildError("this Glance does not offer glance-direct "
                                "image import (it offers: %s)"
                                % (", ".join(offered) or "no import"))
    sent = retries.send_once(
        "sending the image data to Glance",
        lambda: _send(glance, image_id, data, stage, method == "auto",
                      progress, cancel),
        lambda: _received(glance, image_id), cancel=cancel,
        explain=explain, timeout=timeout, attempts=SENDS)
    active = wait_active(glance, image_id, timeout, cancel)
    algorithm = active.get("os_hash_algo")
    ours = sent if algorithm == streams.DEFAULT_HASH and sent else None
    if algorithm and not ours:
        ours = data.digest(algorithm)
    if not algorithm or active.get("os_hash_value") != ours:
        raise errors.BuildError(
            "Glance image %s does not hold the bytes sent: its %s is %s, "
            "ours is %s" % (image_id, algorithm or "hash", active.get(
                "os_hash_value") or "missing", ours))
    return finish(glance, image_id, name, role, owned_here, cancel)


def create(glance, name, disk_format, container_format, visibility,
           min_disk, min_ram, properties, cancel):
    """Create the queued Glance image ``name`` (owned by this process while
    its bytes move); its id. Whoever creates it deletes it when its bytes
    do not arrive."""
    props = dict(properties, **{cloud.ROLE: UPLOADING})
    props.setdefault(cloud.OWNER_TAG, "%s:%d" % (socket.gethostname(),
                                                 os.getpid()))
    image = retries.send_once(
        "Glance could not create the image %s" % name,
        lambda: glance.images.create(
            name=name, disk_format=disk_format,
            container_format=container_format, visibility=visibility,
            min_disk=int(min_disk), min_ram=int(min_ram), **props),
        lambda: _found(glance, name, props), cancel=cancel, explain=explain)
    return image.id


def wait_active(glance, image_id, timeout, cancel=None):
    """Wait for the image to become active; the image."""
    return waiter.wait_for(
        "waiting for Glance image %s to become active" % image_id,
        lambda: call("reading Glance image %s" % image_id, glance.images.get,
                     image_id),
        lambda i: i.status == "active", timeout=timeout, cancel=cancel,
        failed=_failed_import)


def finish(glance, image_id, name, role, owned_here, cancel=None):
    """Mark the image's bytes checked (its ``imgfac_role`` becomes
    ``role``; the owner is dropped when :func:`create` set it); the
    image (as glanceclient's update read it after the change)."""
    return retries.send_once(
        "marking Glance image %s finished" % image_id,
        lambda: glance.images.update(
            image_id, remove_props=[cloud.OWNER_TAG] if owned_here else None,
            **{cloud.ROLE: role}),
        lambda: _found(glance, name, {cloud.ROLE: role}, image_id),
        cancel=cancel, explain=explain)


def _found(glance, name, properties, image_id=None):
    """The image ``name`` (or ``image_id``) with ``properties`` (None:
    there is none): what a create or update whose answer was lost did."""
    images = [glance.images.get(image_id)] if image_id else \
        glance.images.list(filters={"name": name})
    for image in images:
        if all(str(image.get(k)) == str(v) for k, v in properties.items()):
            return image
    return None


def _send(glance, image_id, data, stage, fall_back, progress, cancel):
    """Stream ``data`` to the image (uploaded; staged and imported with
    glance-direct when ``stage``, or, with ``fall_back``, when Glance
    refuses the upload and offers glance-direct: asked only then); returns
    the bytes' sha512 hex digest."""
    from glanceclient import exc
    reader = data.reader(progress, cancel)
    try:
        if stage:
            LOG.info("Staging %d bytes in Glance image %s", data.size,
                     image_id)
            glance_put.put(glance, image_id, reader, data.size, streams.CHUNK,
                           stage=True)
        else:
            LOG.info("Uploading %d bytes to Glance image %s", data.size,
                     image_id)
            glance_put.put(glance, image_id, reader, data.size, streams.CHUNK)
    except (exc.HTTPForbidden, exc.HTTPMethodNotAllowed) as refused:
        if stage or not fall_back or \
                "glance-direct" not in import_methods(glance):
            raise
        LOG.info("Glance refused the upload (%s): its image import, then",
                 explain(refused))
        reader.close()
        return _send(glance, image_id, data, True, False, progress, cancel)
    finally:
        reader.close()
    if reader.done != data.size:
        raise errors.BuildError("%s changed while it was uploaded"
                                % getattr(data, "path", "the data"))
    if stage:
        _import(glance, image_id)
    return reader.hexdigest()


def _import(glance, image_id):
    retries.send_once(
        "importing the staged data",
        lambda: glance.images.image_import(image_id, method="glance-direct"),
        lambda: True if glance.images.get(image_id).status in (
            "importing", "active") else None, explain=explain)


def _received(glance, image_id):
    """After a transfer whose answer was lost: "" (hash the bytes again)
    when Glance has the bytes, None when it has none and they must be sent
    again (an interrupted upload leaves the image queued). A stage whose
    answer was lost cannot be told from one cut half-way (the image is
    "uploading" either way, and Glance says nothing of the staged size):
    the push fails (its image is deleted) rather than import part of it.
    An upload Glance has not yet seen end ("saving") is waited for."""
    status = waiter.wait_for(
        "waiting for Glance to end the cut upload of image %s" % image_id,
        lambda: glance.images.get(image_id), lambda i: i.status != "saving",
        timeout=SETTLE).status
    if status == "uploading":
        raise errors.BuildError(
            "staging the image data in Glance: the connection was lost "
            "during the transfer, and Glance does not say how much of it "
            "arrived")
    return None if status == "queued" else ""


def _failed_import(image):
    if image.status in ("killed", "deleted", "deactivated"):
        return "the image is %s" % image.status
    failed = image.get("os_glance_failed_import")
    if failed:
        return "the import failed in store %s" % failed
    return None


def _delete(glance, image_id):
    from glanceclient import exc
    try:
        glance.images.delete(image_id)
    except exc.HTTPNotFound:
        pass


def delete(glance, image_id):
    """Delete a Glance image; one that is already gone is fine."""
    call("Glance could not delete image %s" % image_id, _delete, glance,
         image_id)


def tagged(glance, build_id):
    """The images of ``glance`` tagged with the build ``build_id``
    (``cloud.BUILD_TAG``), as glanceclient lists them."""
    found = call("listing the Glance images of build %s" % build_id,
                 lambda: list(glance.images.list(
                     filters={cloud.BUILD_TAG: build_id})))
    return [image for image in found if image.get(cloud.BUILD_TAG) ==
            build_id]


def delete_quietly(glance, image_id):
    """:func:`delete` on the way back from a failure: a failure to delete
    is logged (a sweep finds the image by its tags), never raised."""
    try:
        delete(glance, image_id)
    except errors.BuildError as exc:
        LOG.warning("Could not delete Glance image %s: %s", image_id, exc)

"""Tasks that make a provider's Glance image of a finished image: send its
bytes (or have that Glance fetch them itself), then have it copy the image
into the stores asked for. Names in :mod:`novaimagebuilder.tasks.names`.

Each image a push makes carries the push's id (``cloud.BUILD_TAG``), so
its reverts, a rerun of the push and a sweep all find it the same way.
"""
import logging

from taskflow import task

from novaimagebuilder.images import glance
from novaimagebuilder.tasks import names

LOG = logging.getLogger(__name__)


class PushRun:
    """One run of a push, shared by its tasks (nothing of it is saved).

    ``client``: the destination's glanceclient; ``build_id``: the push's
    id, the tag of what it makes; ``send()``: makes the active image, its
    bytes checked, and returns it (leaving no image when it fails);
    ``stores``: Glance stores to copy it into; ``timeout``, ``progress``
    (percent, activity), ``cancel`` (an Event); ``owned()``: whether this
    process still drives the push (None: always)."""

    def __init__(self, client, build_id, send, stores=(), timeout=3600,
                 progress=None, cancel=None, owned=None, log=None):
        self.client = client
        self.build_id = build_id
        self.send = send
        self.stores = list(stores)
        self.timeout = timeout
        self.progress = progress or (lambda percent, activity: None)
        self.cancel = cancel
        self.owned = owned
        self.log = log or LOG

    def remove_tagged(self, why):
        """Delete the destination's images tagged with this push; a failure
        is logged (a sweep finds them by the tag), never raised."""
        if self.owned is not None and not self.owned():
            self.log.warning("Leaving the images of push %s to the process "
                             "that took it over", self.build_id)
            return
        try:
            found = glance.tagged(self.client, self.build_id)
        except Exception as exc:
            self.log.warning("Could not look up the images of push %s: %s",
                             self.build_id, exc)
            return
        for image in found:
            self.log.info("Deleting Glance image %s (%s): %s", image.name,
                          image.id, why)
            glance.delete_quietly(self.client, image.id)


class SendImage(task.Task):
    """Make the destination's image (``run.send()``); provides its id and
    hash. A rerun (the push resumed) first deletes what an earlier run
    left: a half-sent image cannot be taken up by another process.
    Reversion strategy: delete every image of the destination tagged with
    the push (the one made, or one half-made when the task failed)."""

    default_provides = names.PUSHED

    def __init__(self, run, **kwargs):
        super().__init__(name=names.SEND_IMAGE, **kwargs)
        self.run = run

    def execute(self):
        self.run.remove_tagged("left by an earlier run of this push")
        image = self.run.send()
        return {"id": image.id, "os_hash_algo": image.get("os_hash_algo"),
                "os_hash_value": image.get("os_hash_value")}

    def revert(self, result, *args, **kwargs):
        self.run.remove_tagged("the push failed")


class CopyIntoStores(task.Task):
    """Have the destination Glance copy the image into ``run.stores``
    (copy-image: no byte passes through us). Reversion strategy: none of
    its own; SendImage's revert deletes the image with its copies."""

    def __init__(self, run, **kwargs):
        super().__init__(name=names.COPY_INTO_STORES, **kwargs)
        self.run = run

    def execute(self, pushed):
        from novaimagebuilder.images import stores
        run = self.run
        if run.stores:
            run.progress(96, "Glance copies image %s into store(s) %s" % (
                pushed["id"], ", ".join(run.stores)))
            stores.copy_into(run.client, pushed["id"], run.stores,
                             run.timeout, run.cancel)

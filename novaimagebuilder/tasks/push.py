"""Tasks that make a provider's Glance image of a finished image: send its
bytes (or have that Glance fetch them itself), then have it copy the image
into the stores asked for. Names in :mod:`novaimagebuilder.tasks.names`.

Each image a push makes carries the push's id (``cloud.BUILD_TAG``), so
its reverts, a rerun of the push and a sweep all find it the same way; a
rerun adopts the image an earlier run left (:mod:`images.adopt`).
"""
import logging

from taskflow import task

from novaimagebuilder import cloud
from novaimagebuilder.images import adopt
from novaimagebuilder.images import glance
from novaimagebuilder.tasks import names

LOG = logging.getLogger(__name__)


class PushRun:
    """One run of a push, shared by its tasks (nothing of it is saved).

    ``client``: the destination's glanceclient; ``build_id``: the push's
    id, the tag of what it makes; ``send(image_id=None)``: makes the
    active image (or fills the queued one ``image_id`` an earlier run
    left), its bytes checked, and returns it (leaving no image when it
    fails); ``holds(image)``: whether an active image holds the push's
    bytes; ``fill``: whether a queued image may be filled (see
    :func:`adopt.verdict`); ``owner``: the owner tag of this run, put on an
    image it adopts; ``stores``: Glance stores to copy it into;
    ``timeout``, ``progress`` (percent, activity), ``cancel`` (an Event);
    ``owned()``: whether this process still drives the push (None:
    always)."""

    def __init__(self, client, build_id, send, stores=(), timeout=3600,
                 progress=None, cancel=None, owned=None, log=None,
                 holds=lambda image: False, fill=True, owner=None):
        self.client = client
        self.build_id = build_id
        self.send = send
        self.holds = holds
        self.fill = fill
        self.owner = owner
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

    def earlier(self):
        """The image an earlier run of the push left that this one goes on
        with, and its verdict (:mod:`adopt`), or None; the others it left
        are deleted. The one kept carries this run's owner tag."""
        found = []
        for image in glance.tagged(self.client, self.build_id):
            image = adopt.settled(self.client, image, self.timeout,
                                  self.cancel)
            found.append((image, adopt.verdict(image, self.holds,
                                               self.fill)))
        kept, others = adopt.choose(found)
        for image, (_, why) in others:
            self.log.info("Deleting Glance image %s (%s) an earlier run of "
                          "push %s left: %s", image.name, image.id,
                          self.build_id, why)
            glance.delete(self.client, image.id)
        if kept is None:
            return None
        image, (what, why) = kept
        self.log.info("Taking up Glance image %s (%s, %s) an earlier run of "
                      "push %s left: %s", image.name, image.id, image.status,
                      self.build_id, why)
        if self.owner and image.get(cloud.OWNER_TAG) != self.owner:
            glance.call("marking Glance image %s as this process's"
                        % image.id, self.client.images.update, image.id,
                        **{cloud.OWNER_TAG: self.owner})
        return image, what


class SendImage(task.Task):
    """Make the destination's image (``run.send()``); provides its id and
    hash. A rerun (the push resumed) goes on with the image an earlier run
    left (:meth:`PushRun.earlier`): one that holds the push's bytes is
    taken as it is, a queued one is filled, others are replaced; there is
    never a second image. Reversion strategy: delete every image of the
    destination tagged with the push (the one made, or one half-made when
    the task failed)."""

    default_provides = names.PUSHED

    def __init__(self, run, **kwargs):
        super().__init__(name=names.SEND_IMAGE, **kwargs)
        self.run = run

    def execute(self):
        run = self.run
        kept = run.earlier()
        if kept is None:
            image = run.send()
        elif kept[1] == adopt.FILL:
            image = run.send(kept[0].id)
        elif kept[1] == adopt.FINISH:
            image = glance.finish(run.client, kept[0].id, kept[0].name,
                                  glance.FINISHED, False, run.cancel)
        else:
            image = kept[0]
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

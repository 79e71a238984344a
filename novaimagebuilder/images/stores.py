"""Glance stores: an image put into more stores of its Glance by the Glance
itself (the ``copy-image`` import method), so no byte passes through us.

``copy-image`` is used when the Glance advertises it in its import
discovery (``/v2/info/import``); Glance's default policy lets only an admin
(or the image's owner, where the operator allows it) ask for it.
"""
import logging

from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder import retries
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)


def of(image):
    """The stores holding the Glance ``image`` (a set of store ids)."""
    return set(filter(None, (image.get("stores") or "").split(",")))


def copy_into(client, image_id, wanted, timeout, cancel=None):
    """Have Glance copy the active image ``image_id`` into the stores of
    ``wanted`` that do not hold it yet; returns the image, once it is in
    all of them. A copy under way (asked for by an earlier run of the
    build) is waited for, not asked again. A Glance without copy-image, or
    a copy that fails, is a one-line BuildError."""
    image = glance.call("reading Glance image %s" % image_id,
                        client.images.get, image_id)
    missing = [store for store in wanted if store not in of(image)]
    if not missing:
        return image
    going = _importing(image)
    if not set(missing) <= going:
        _ask(client, image_id, [store for store in missing
                                if store not in going], cancel)

    def failed(found):
        lost = set(missing) & set(filter(None, (
            found.get("os_glance_failed_import") or "").split(",")))
        return "the copy into store(s) %s failed" % ", ".join(
            sorted(lost)) if lost else None

    return waiter.wait_for(
        "waiting for Glance to copy image %s into store(s) %s" % (
            image_id, ", ".join(missing)),
        lambda: glance.call("reading Glance image %s" % image_id,
                            client.images.get, image_id),
        lambda found: set(missing) <= of(found), timeout=timeout,
        cancel=cancel, failed=failed)


def _importing(image):
    """The stores Glance is copying ``image`` into."""
    return set(filter(None, (image.get("os_glance_importing_to_stores")
                             or "").split(",")))


def _ask(client, image_id, missing, cancel):
    """Ask Glance to copy the image into the stores ``missing``."""
    offered = glance.import_methods(client)
    if "copy-image" not in offered:
        raise errors.BuildError(
            "Glance image %s is not in store(s) %s, and this Glance does not "
            "offer copy-image to put it there (it offers: %s)" % (
                image_id, ", ".join(missing),
                ", ".join(offered) or "no import"))
    LOG.info("Glance copies image %s into store(s) %s itself (copy-image)",
             image_id, ", ".join(missing))

    def asked(found):
        """The copy is under way or done (a lost answer's request was
        made)."""
        return set(missing) <= _importing(found) | of(found)

    retries.send_once(
        "asking Glance to copy image %s into store(s) %s" % (
            image_id, ", ".join(missing)),
        lambda: client.images.image_import(
            image_id, method="copy-image", stores=missing,
            allow_failure=False),
        lambda: True if asked(client.images.get(image_id)) else None,
        cancel=cancel, explain=glance.explain)

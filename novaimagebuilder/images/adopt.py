"""What a rerun of a step that makes a Glance image (a push resumed after
its process died) does with the image an earlier run of it left, tagged
with the build: it adopts it rather than make a second.

As Glance behaves when the process sending the bytes dies:

- an upload cut half-way makes the Glance API put the image back to
  ``queued`` (its bytes dropped) once it notices: the image is filled
  again. Until it notices the image is ``saving``: waited for, up to
  :data:`glance.SETTLE` seconds (a Glance that never notices, its API
  process killed, leaves it ``saving``: replaced);
- an import (web-download, glance-direct, copy-image) goes on inside
  Glance without its caller: an ``importing`` image is waited for;
- a cut stage leaves the image ``queued`` but may leave its staged bytes,
  and Glance refuses a second stage of it ("has data on staging"); one
  whose answer was lost leaves it ``uploading``, with no word of how much
  arrived: such images are replaced (deleted, another one made);
- an ``active`` image whose bytes are the push's (its hash) is the push's
  image, marked finished if the earlier run had not; one holding other
  bytes, and a ``killed`` or ``deactivated`` one, are replaced.
"""
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder import waiter

#: Verdicts on an earlier run's image, best first.
ADOPT, FINISH, FILL, REPLACE = "adopt", "finish", "fill", "replace"
#: Statuses Glance leaves by itself.
_BUSY = ("saving", "importing")


def verdict(image, holds, fill=True):
    """``(verdict, why)`` for the Glance ``image`` (as glanceclient reads
    it, not busy) an earlier run left: ``holds(image)`` says whether an
    active image holds the push's bytes; ``fill``: whether a queued image
    may be filled (not when the bytes are staged: see the module)."""
    status = image.status
    if status == "active":
        if not holds(image):
            return REPLACE, "it holds other bytes than the push's"
        if image.get(cloud.ROLE) == glance.FINISHED:
            return ADOPT, "it holds the push's bytes"
        return FINISH, "it holds the push's bytes, not yet marked finished"
    if status == "queued":
        if fill:
            return FILL, "it has no bytes yet"
        return REPLACE, "Glance may keep its staged bytes and refuse " \
            "another stage"
    if status == "uploading":
        return REPLACE, "Glance does not say how much of its staged bytes " \
            "arrived"
    return REPLACE, "it is %s" % status


def settled(client, image, timeout, cancel=None):
    """``image`` once Glance has ended what it was doing with it (an
    upload it has yet to see cut, an import); an image still ``saving``
    after :data:`glance.SETTLE` seconds is returned as it is (its API
    process will not end it), an import still going after ``timeout``
    seconds is a WaitTimeout."""
    if image.status not in _BUSY:
        return image
    saving = image.status == "saving"
    try:
        return waiter.wait_for(
            "waiting for Glance to end the %s of image %s" % (
                "upload" if saving else "import", image.id),
            lambda: glance.call("reading Glance image %s" % image.id,
                                client.images.get, image.id),
            lambda found: found.status not in _BUSY,
            timeout=glance.SETTLE if saving else timeout, cancel=cancel)
    except errors.WaitTimeout:
        if saving:
            return glance.call("reading Glance image %s" % image.id,
                               client.images.get, image.id)
        raise


def choose(found):
    """Of ``[(image, (verdict, why))]``, the one to go on with (None: none
    worth it) and the others, to delete."""
    rank = (ADOPT, FINISH, FILL)
    worth = sorted((item for item in found if item[1][0] in rank),
                   key=lambda item: rank.index(item[1][0]))
    kept = worth[0] if worth else None
    return kept, [item for item in found if item is not kept]

"""The JEOS cache of the Nova backend: private Glance images of the
project."""
import logging
import time

from novaimagebuilder import cloud
from novaimagebuilder.images import glance
from novaimagebuilder.images import jeos
from novaimagebuilder import retries
from novaimagebuilder import sweep

LOG = logging.getLogger(__name__)

#: Image properties of a JEOS cache entry (besides cloud.ROLE = "jeos-cache").
JEOS_KEY = "imgfac_jeos_key"
JEOS_NAME = "imgfac_jeos_os"
JEOS_STORED = "imgfac_jeos_stored"


def patch_image(conn, image_id, patch):
    """Apply a JSON patch to a Glance image; its answer (HTTP errors
    raised)."""
    from openstack import exceptions as sdk
    answer = conn.image.patch(
        "/images/%s" % image_id, json=patch,
        headers={"Content-Type": "application/"
                 "openstack-images-v2.1-json-patch"})
    sdk.raise_from_response(answer)
    return answer


class JeosCache(jeos.Cache):
    """JEOS cache entries as private Glance images of the project, found by
    their key property; they are never leftovers to a sweep."""

    where = "Glance"

    def __init__(self, conn, log=None):
        self.conn = conn
        self.log = log or LOG

    def _images(self, **filters):
        """The project's entries (with ``filters``), asked of Glance by
        role and owner: each as the image's JSON."""
        client = glance.of(self.conn)
        filters.update({cloud.ROLE: sweep.JEOS_CACHE,
                        "owner": self.conn.current_project_id})
        return glance.call("listing the JEOS cache", lambda: [
            dict(image) for image in client.images.list(filters=filters)])

    @staticmethod
    def _entry(image):
        try:
            stored = float(image.get(JEOS_STORED))
        except (TypeError, ValueError):
            stored = 0.0
        return jeos.Entry(image.get(JEOS_KEY), image["id"],
                          image.get(JEOS_NAME) or image.get("name"), stored,
                          image.get(cloud.BUILD_TAG), image.get("size"))

    def entries(self):
        return [self._entry(image) for image in self._images()]

    def find(self, key):
        found = sorted(self._images(**{JEOS_KEY: key}),
                       key=lambda image: self._entry(image).created,
                       reverse=True)
        for image in found:
            if image.get("status") == "active" and image.get("size"):
                return self._entry(image)
            self.log.warning("Ignoring the broken JEOS cache entry %s (Glance "
                             "says it is %s); removing it", image["id"],
                             image.get("status"))
            self.remove(self._entry(image))
        return None

    def add(self, captured, key, name, build):
        stored = int(time.time())
        props = {cloud.ROLE: sweep.JEOS_CACHE, JEOS_KEY: key, JEOS_NAME: name,
                 JEOS_STORED: "%d" % stored}
        # One JSON patch: the entry's name and properties, and no owner tag
        # (no process owns an entry: a sweep must not judge it by one).
        ops = [{"op": "replace", "path": "/name",
                "value": "%sjeos-%s" % (cloud.NAME_PREFIX, key[:12])}] + [
            {"op": "add", "path": "/" + k, "value": v}
            for k, v in props.items()] + [
            {"op": "remove", "path": "/" + cloud.OWNER_TAG}]

        def made():  # the patch whose answer was lost was applied
            found = self.conn.image.get("/images/%s" % captured).json()
            return found if found.get(JEOS_KEY) == key else None
        image = retries.send_once(
            "making image %s a JEOS cache entry" % captured,
            lambda: patch_image(self.conn, captured, ops).json(), made,
            log=self.log)
        return jeos.Entry(key, captured, name, float(stored),
                          image.get(cloud.BUILD_TAG), image.get("size"))

    def remove(self, entry):
        cloud.call("deleting the JEOS cache entry %s" % entry.id,
                   self.conn.image.delete_image, entry.id, ignore_missing=True)

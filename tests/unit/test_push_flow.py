"""The push as a TaskFlow flow: its tasks in order, what it saves, how its
revert and a rerun find the images it made (by the push's tag), and what
a rerun does with each image Glance may have been left with."""
import logging

import pytest
from taskflow.persistence.backends import impl_memory

from novaimagebuilder import cloud
from novaimagebuilder import engine
from novaimagebuilder import errors
from novaimagebuilder.flows import push as push_flow
from novaimagebuilder.images import adopt
from novaimagebuilder.images import glance
from novaimagebuilder.tasks import names
from novaimagebuilder.tasks import push

BUILD = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"


class Image(dict):
    """An image as glanceclient gives it (keys and attributes)."""

    def __getattr__(self, key):
        return self[key]


class Images:
    """The images API of a Glance holding ``made`` ({id: Image}); an image
    whose ``later`` lists statuses takes the next one at each read (Glance
    ending an upload or an import by itself)."""

    def __init__(self):
        self.made = {}

    def create(self, image_id, **props):
        self.made[image_id] = Image(dict(
            id=image_id, name="imgfac-nova-x", status="active",
            os_hash_algo="sha512", os_hash_value="ab" * 64), **props)
        return self.made[image_id]

    def get(self, image_id):
        image = self.made[image_id]
        if image.get("later"):
            image["status"] = image["later"].pop(0)
        return image

    def update(self, image_id, **props):
        self.made[image_id].update(props)
        return self.made[image_id]

    def list(self, filters):
        return [image for image in self.made.values()
                if all(image.get(k) == v for k, v in filters.items())]

    def delete(self, image_id):
        del self.made[image_id]


class Client:
    def __init__(self):
        self.images = Images()


def _run(client, stores=(), owned=None, sent=None, fill=True):
    """A PushRun whose send() makes image imgN (or fills the image given)
    with the bytes "ab"*64 (their hash) and marks it finished."""
    sent = [] if sent is None else sent

    def send(image_id=None):
        sent.append(image_id)
        if image_id is None:
            image_id = "img%d" % len(sent)
            client.images.create(image_id, **{cloud.BUILD_TAG: BUILD})
        return client.images.update(image_id, status="active",
                                    os_hash_value="ab" * 64,
                                    **{cloud.ROLE: glance.FINISHED})
    return push.PushRun(client, BUILD, send, stores=stores, owned=owned,
                        holds=lambda image: image.os_hash_value == "ab" * 64,
                        fill=fill, owner="host:2")


def _left(client, status, role=glance.UPLOADING, **props):
    """An image an earlier run of the push left."""
    return client.images.create("left", status=status, **dict({
        cloud.BUILD_TAG: BUILD, cloud.OWNER_TAG: "host:1", cloud.ROLE: role},
        **props))


def test_the_push_flow_in_order_with_its_values():
    flow = push_flow.get_flow(_run(Client()))
    assert [atom.name for atom in flow] == [names.SEND_IMAGE,
                                            names.COPY_INTO_STORES]
    assert {atom.name: set(atom.provides) for atom in flow}[
        names.SEND_IMAGE] == {names.PUSHED}
    assert flow.requires == set()


def test_a_push_saves_the_image_id_and_hash_only():
    client = Client()
    persistence = impl_memory.MemoryBackend()
    results = engine.run(push_flow.get_flow(_run(client)), BUILD,
                         persistence)
    assert results[names.SEND_IMAGE] == {
        "id": "img1", "os_hash_algo": "sha512", "os_hash_value": "ab" * 64}
    assert list(client.images.made) == ["img1"]


def test_a_failed_store_copy_deletes_the_image_it_sent(monkeypatch):
    from novaimagebuilder.images import stores

    def refuse(*args, **kwargs):
        raise errors.BuildError("Glance cannot copy into store ceph")
    monkeypatch.setattr(stores, "copy_into", refuse)
    client = Client()
    client.images.create("other")  # not the push's: left alone
    with pytest.raises(errors.BuildError, match="store ceph"):
        engine.run(push_flow.get_flow(_run(client, stores=["ceph"])), BUILD)
    assert list(client.images.made) == ["other"]


@pytest.mark.parametrize("status,role,props,sent,why", [
    ("active", glance.FINISHED, {}, [], "holds the push's bytes"),
    ("active", glance.UPLOADING, {}, [], "not yet marked finished"),
    ("queued", glance.UPLOADING, {}, ["left"], "no bytes yet"),
    # Glance notices the cut upload and puts the image back to queued.
    ("saving", glance.UPLOADING, {"later": ["saving", "queued"]}, ["left"],
     "no bytes yet"),
    # An import goes on inside Glance without its caller.
    ("importing", glance.UPLOADING, {"later": ["importing", "active"]}, [],
     "not yet marked finished"),
    ("uploading", glance.UPLOADING, {}, [None], "how much of its staged"),
    ("killed", glance.UPLOADING, {}, [None], "it is killed"),
    ("active", glance.FINISHED, {"os_hash_value": "cd" * 64}, [None],
     "other bytes"),
], ids=["finished", "unmarked", "queued", "saving-then-queued",
        "importing", "staged", "killed", "other-bytes"])
def test_a_rerun_goes_on_with_the_image_an_earlier_run_left(
        status, role, props, sent, why, caplog):
    caplog.set_level(logging.INFO)
    client = Client()
    _left(client, status, role, **props)
    client.images.create("other")  # not the push's: left alone
    done = []
    results = engine.run(push_flow.get_flow(_run(client, sent=done)), BUILD)
    assert done == sent and why in caplog.text
    pushed = results[names.SEND_IMAGE]["id"]
    assert sorted(client.images.made) == sorted(["other", pushed])
    image = client.images.made[pushed]
    assert (image.status, image[cloud.ROLE]) == ("active", glance.FINISHED)
    assert pushed != "left" or image[cloud.OWNER_TAG] == "host:2"


def test_a_staged_push_replaces_a_queued_image():
    client = Client()
    _left(client, "queued")
    done = []
    engine.run(push_flow.get_flow(_run(client, sent=done, fill=False)),
               BUILD)
    assert done == [None] and list(client.images.made) == ["img1"]


def test_of_several_images_left_the_best_is_kept():
    client = Client()
    client.images.create("queued", status="queued", **{
        cloud.BUILD_TAG: BUILD, cloud.ROLE: glance.UPLOADING})
    _left(client, "active", glance.FINISHED)
    done = []
    results = engine.run(push_flow.get_flow(_run(client, sent=done)), BUILD)
    assert done == [] and results[names.SEND_IMAGE]["id"] == "left"
    assert list(client.images.made) == ["left"]


def test_an_upload_glance_never_ends_is_replaced(monkeypatch):
    monkeypatch.setattr(glance, "SETTLE", 0.2)
    client = Client()
    _left(client, "saving")
    done = []
    engine.run(push_flow.get_flow(_run(client, sent=done)), BUILD)
    assert done == [None] and list(client.images.made) == ["img1"]


def test_verdicts_on_what_an_earlier_run_left():
    def image(status, role=glance.UPLOADING):
        return Image(status=status, **{cloud.ROLE: role})
    holds = {"active": True}.get
    assert adopt.verdict(image("active", glance.FINISHED),
                         lambda i: True)[0] == adopt.ADOPT
    assert adopt.verdict(image("active"), lambda i: True)[0] == adopt.FINISH
    assert adopt.verdict(image("active"), lambda i: False)[0] == \
        adopt.REPLACE
    assert adopt.verdict(image("queued"), holds)[0] == adopt.FILL
    assert adopt.verdict(image("queued"), holds, fill=False)[0] == \
        adopt.REPLACE
    for status in ("uploading", "killed", "deactivated", "pending_delete"):
        assert adopt.verdict(image(status), holds)[0] == adopt.REPLACE


def test_a_push_taken_over_leaves_its_images_to_the_new_owner(monkeypatch):
    from novaimagebuilder.images import stores

    def refuse(*args, **kwargs):
        raise errors.BuildError("the claim was lost")
    monkeypatch.setattr(stores, "copy_into", refuse)
    client = Client()
    with pytest.raises(errors.BuildError):
        engine.run(push_flow.get_flow(_run(
            client, stores=["ceph"], owned=lambda: False)), BUILD)
    assert list(client.images.made) == ["img1"]

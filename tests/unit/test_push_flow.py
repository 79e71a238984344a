"""The push as a TaskFlow flow: its tasks in order, what it saves, how its
revert and a rerun find the images it made (by the push's tag)."""
import pytest
from taskflow.persistence.backends import impl_memory

from novaimagebuilder import cloud
from novaimagebuilder import engine
from novaimagebuilder import errors
from novaimagebuilder.flows import push as push_flow
from novaimagebuilder.tasks import names
from novaimagebuilder.tasks import push

BUILD = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"


class Image(dict):
    """An image as glanceclient gives it (keys and attributes)."""

    def __getattr__(self, key):
        return self[key]


class Images:
    """The images API of a Glance holding ``made`` ({id: Image})."""

    def __init__(self):
        self.made = {}

    def create(self, image_id, **props):
        self.made[image_id] = Image(dict(
            id=image_id, name="imgfac-nova-x", status="active",
            os_hash_algo="sha512", os_hash_value="ab" * 64), **props)
        return self.made[image_id]

    def list(self, filters):
        return [image for image in self.made.values()
                if all(image.get(k) == v for k, v in filters.items())]

    def delete(self, image_id):
        del self.made[image_id]


class Client:
    def __init__(self):
        self.images = Images()


def _run(client, stores=(), owned=None, sent=None):
    sent = [] if sent is None else sent

    def send():
        sent.append(len(sent))
        return client.images.create("img%d" % len(sent),
                                    **{cloud.BUILD_TAG: BUILD})
    return push.PushRun(client, BUILD, send, stores=stores, owned=owned)


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


def test_a_rerun_deletes_what_an_earlier_run_left_and_sends_again():
    client = Client()
    client.images.create("half", status="saving", **{cloud.BUILD_TAG: BUILD})
    sent = []
    results = engine.run(push_flow.get_flow(_run(client, sent=sent)), BUILD)
    assert sent == [0]
    assert list(client.images.made) == [results[names.SEND_IMAGE]["id"]]


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

"""An image put into more stores of its Glance by Glance itself
(copy-image), with the real glanceclient over requests-mock."""
import json

import pytest
import requests_mock
from keystoneauth1 import session

from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder.images import stores
from tests.unit.test_glance_copy import SCHEMA

URL = "http://glance.test"
IMAGE = "0b3b6a5e-2b43-4d5e-9a1f-7d3c1c0e9a11"


def _image(mocker, *answers):
    mocker.get(URL + "/v2/schemas/image", json=SCHEMA)
    mocker.get(URL + "/v2/images/" + IMAGE, [{"json": dict(
        {"id": IMAGE, "status": "active", "name": "i"}, **answer)}
        for answer in answers])


def _copy(wanted):
    client = glance.client(session.Session(), endpoint=URL)
    return stores.copy_into(client, IMAGE, wanted, timeout=30)


def test_glance_copies_the_image_into_the_stores_it_is_not_in():
    with requests_mock.Mocker() as mocker:
        _image(mocker, {"stores": "file1"},
               {"stores": "file1", "os_glance_importing_to_stores": "ceph2"},
               {"stores": "file1,ceph2"})
        mocker.get(URL + "/v2/info/import", json={"import-methods": {
            "value": ["glance-direct", "copy-image"]}})
        imported = mocker.post(URL + "/v2/images/%s/import" % IMAGE,
                               status_code=202, text="")
        image = _copy(["file1", "ceph2"])
    assert stores.of(image) == {"file1", "ceph2"}
    assert json.loads(imported.last_request.body) == {
        "method": {"name": "copy-image"}, "stores": ["ceph2"]}


def test_nothing_is_asked_when_the_image_is_in_every_store():
    with requests_mock.Mocker() as mocker:
        _image(mocker, {"stores": "file1,ceph2"})
        _copy(["ceph2"])
        assert [r.method for r in mocker.request_history] == ["GET", "GET"]


def test_a_copy_under_way_is_waited_for_not_asked_again():
    """As when a push resumes after its process died mid-copy."""
    with requests_mock.Mocker() as mocker:
        _image(mocker, {"stores": "file1",
                        "os_glance_importing_to_stores": "ceph2"},
               {"stores": "file1,ceph2"})
        image = _copy(["ceph2"])
        assert "POST" not in [r.method for r in mocker.request_history]
    assert stores.of(image) == {"file1", "ceph2"}


def test_a_glance_without_copy_image_is_one_line_and_asked_nothing():
    with requests_mock.Mocker() as mocker:
        _image(mocker, {"stores": "file1"})
        mocker.get(URL + "/v2/info/import", json={"import-methods": {
            "value": ["glance-direct", "web-download"]}})
        with pytest.raises(errors.BuildError) as raised:
            _copy(["ceph2"])
        assert "POST" not in [r.method for r in mocker.request_history]
    assert str(raised.value) == (
        "Glance image %s is not in store(s) ceph2, and this Glance does not "
        "offer copy-image to put it there (it offers: glance-direct, "
        "web-download)" % IMAGE)


def test_a_failed_copy_is_one_line():
    with requests_mock.Mocker() as mocker:
        _image(mocker, {"stores": "file1"},
               {"stores": "file1", "os_glance_failed_import": "ceph2"})
        mocker.get(URL + "/v2/info/import", json={"import-methods": {
            "value": ["copy-image"]}})
        mocker.post(URL + "/v2/images/%s/import" % IMAGE, status_code=202,
                    text="")
        with pytest.raises(errors.WaitFailed, match=r"^waiting for Glance to "
                           r"copy image \S+ into store\(s\) ceph2: the copy "
                           r"into store\(s\) ceph2 failed$"):
            _copy(["ceph2"])

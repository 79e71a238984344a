"""The REST daemon's routes, shapes and status codes, through webob requests
against the real WSGI application (noauth; the test plugins build)."""
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import webob

from imgfac_nova import config
from imgfac_nova import images
from imgfac_nova.api import conf as api_conf
from imgfac_nova.api import deploy
from tests import poll
from tests.unit import httpserver

TEMPLATE = """<template>
  <name>tiny</name>
  <os>
    <name>TestOS</name>
    <version>1</version>
    <arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>rootsecret</rootpw>
  </os>
  <description>a tiny test image</description>
</template>
"""


class Client:
    def __init__(self, app, service):
        self.app = app
        self.service = service
        self.store = service.store

    def request(self, method, path, body=None, form=None, headers=None):
        request = webob.Request.blank(path, method=method,
                                      headers=headers or {})
        if body is not None:
            request.body = json.dumps(body).encode()
            request.content_type = "application/json"
        elif form is not None:
            request.content_type = "application/x-www-form-urlencoded"
            request.body = urllib.parse.urlencode(form).encode()
        return request.get_response(self.app)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def wait(self, path, status=images.COMPLETE, timeout=30):
        def reached():
            image = next(iter(self.get(path).json.values()))
            if image["status"] == status:
                return image
            assert image["status"] not in (images.FAILED, images.COMPLETE), \
                image
        return poll.wait_for(reached, timeout, "%s to become %s"
                             % (path, status), interval=0.02)

    def base(self, **parameters):
        answer = self.post("/imagefactory/base_images", body={"base_image": {
            "template": TEMPLATE, "parameters": parameters}})
        assert answer.status_int == 202, answer.text
        return answer.json["base_image"]


def _conf(config_file, **overrides):
    conf = config.load([config_file])
    api_conf.register(conf)
    conf.set_override("auth_strategy", "noauth", "api")
    conf.set_override("callback_retry_seconds", 10, "api")
    for name, value in overrides.items():
        conf.set_override(name, value, "api")
    return conf


@pytest.fixture
def make_client(plugin_site, config_file):
    services = []

    def make(**overrides):
        conf = _conf(config_file, **overrides)
        service = deploy.service(conf)
        services.append(service)
        return Client(deploy.deploy(conf, service), service)
    yield make
    for service in services:
        service.shutdown(callback_timeout=5)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def complete_base(client):
    image = client.base(size=1000)
    return client.wait(image["href"].replace("http://localhost", ""))


def _path(image):
    return image["href"].replace("http://localhost", "")


def test_root_names_the_service_and_api_version(client):
    answer = client.get("/imagefactory")
    assert answer.status_int == 200
    assert answer.content_type == "application/json"
    assert answer.json["name"] == "imgfac-nova"
    assert answer.json["api_version"] == "2.0"
    assert answer.json["version"]
    assert answer.headers["x-openstack-request-id"].startswith("req-")


def test_base_image_post_answers_202_and_builds_live(client):
    answer = client.post("/imagefactory/base_images", body={"base_image": {
        "template": TEMPLATE, "parameters": {"size": 100, "steps": 5,
                                             "step_seconds": 0.1}}})
    assert answer.status_int == 202
    image = answer.json["base_image"]
    assert image["_type"] == "BaseImage"
    assert image["href"] == "http://localhost/imagefactory/base_images/" + \
        image["id"]
    assert image["status"] in ("PENDING", "BUILDING")
    assert set(image["status_detail"]) == {"activity", "error"}
    assert "rootsecret" not in image["template"]
    assert image["icicle"] is None and image["parameters"]["size"] == 100
    assert image["target_images"] == []
    seen = set()

    def complete():
        now = client.get(_path(image)).json["base_image"]
        seen.add((now["status"], now["percent_complete"]))
        return now if now["status"] == "COMPLETE" else None
    now = poll.wait_for(complete, 30, "the build", interval=0.02)
    assert ("BUILDING", 40) in seen and ("COMPLETE", 100) in seen
    assert "tiny" in now["icicle"]
    listed = client.get("/imagefactory/base_images").json
    assert listed == {"base_images": [{"base_image": {
        "_type": "BaseImage", "id": image["id"], "href": image["href"]}}]}


def test_base_image_form_encoded(client):
    answer = client.post("/imagefactory/base_images", form={
        "template": TEMPLATE, "parameters": json.dumps({"size": 7})})
    assert answer.status_int == 202, answer.text
    image = client.wait(_path(answer.json["base_image"]))
    assert image["parameters"]["size"] == 7


def test_base_image_multipart_form_with_the_template_as_a_file(client):
    request = webob.Request.blank("/imagefactory/base_images", method="POST",
                                  POST={"template": ("tiny.tdl",
                                                     TEMPLATE.encode()),
                                        "parameters": '{"size": 9}'})
    assert request.content_type == "multipart/form-data"
    answer = request.get_response(client.app)
    assert answer.status_int == 202, answer.text
    assert client.wait(_path(answer.json["base_image"]))["parameters"] == {
        "size": 9, "steps": 3, "step_seconds": 0.0, "verbose_marker": False}


@pytest.mark.parametrize("text, message", [
    ("<template>\n  <name>x</name\n</template>",
     "template:3:1: XML syntax error: expected '>'"),
    (TEMPLATE.replace("<arch>x86_64</arch>", "<arch>x86_64</arch><bogus/>"),
     "template:6:"),
])
def test_bad_template_is_400_with_line_and_column_and_creates_nothing(
        client, text, message):
    answer = client.post("/imagefactory/base_images",
                         body={"base_image": {"template": text}})
    assert answer.status_int == 400
    assert answer.json["error"]["code"] == 400
    assert answer.json["error"]["message"].startswith(message), answer.json
    assert "\n" not in answer.json["error"]["message"]
    assert client.store.list() == []


@pytest.mark.parametrize("body, message", [
    ({"base_image": {"template": TEMPLATE, "parameters": {"size": "big"}}},
     "parameter 'size' of plugin testos: expected an integer, got 'big'"),
    ({"base_image": {"template": TEMPLATE, "parameters": {"refuse": "no"}}},
     "the cloud says no: no"),
    ({"base_image": {}}, "missing template"),
    ({"base_image": {"template": TEMPLATE, "parameters": "[1"}},
     "parameters is not JSON"),
    ({"base_image": "x"}, "the body must be"),
    ({"base_image": {"template": TEMPLATE, "parameters": {"callbacks": [1]}}},
     "parameters.callbacks must be a list of URLs"),
    ({"base_image": {"template": TEMPLATE, "parameters": {"sise": "1"}}},
     "unknown parameter 'sise' of plugin testos (known: "),
])
def test_bad_input_is_400_and_creates_nothing(client, body, message):
    answer = client.post("/imagefactory/base_images", body=body)
    assert answer.status_int == 400, answer.text
    assert message in answer.json["error"]["message"]
    assert client.store.list() == []


def test_target_images_top_level_nested_and_from_template(client,
                                                          complete_base):
    base_id = complete_base["id"]
    top = client.post("/imagefactory/target_images", body={"target_image": {
        "target": "filecopy", "base_image_id": base_id}})
    assert top.status_int == 202, top.text
    nested = client.post("/imagefactory/base_images/%s/target_images"
                         % base_id, form={"target": "filecopy",
                                          "parameters": '{"trailer": "XY"}'})
    assert nested.status_int == 202, nested.text
    from_template = client.post("/imagefactory/target_images", body={
        "target_image": {"target": "filecopy", "template": TEMPLATE}})
    assert from_template.status_int == 202, from_template.text
    for answer in (top, nested, from_template):
        image = client.wait(_path(answer.json["target_image"]))
        assert image["_type"] == "TargetImage" and image["target"] == \
            "filecopy"
        assert image["base_image"]["id"] == image["base_image_id"]
    nested_id = nested.json["target_image"]["id"]
    assert client.get("/imagefactory/base_images/%s/target_images/%s"
                      % (base_id, nested_id)).status_int == 200
    other_base = from_template.json["target_image"]["base_image_id"]
    assert client.get("/imagefactory/base_images/%s/target_images/%s"
                      % (other_base, nested_id)).status_int == 404
    listed = client.get("/imagefactory/base_images/%s/target_images"
                        % base_id).json["target_images"]
    assert sorted(i["target_image"]["id"] for i in listed) == sorted(
        [top.json["target_image"]["id"], nested_id])
    assert len(client.get("/imagefactory/target_images").json[
        "target_images"]) == 3
    base = client.get(_path(complete_base)).json["base_image"]
    assert len(base["target_images"]) == 2
    raw = client.get("/imagefactory/base_images/%s/target_images/%s/raw_image"
                     % (base_id, nested_id))
    assert raw.body == b"\0" * 1000 + b"XY"


@pytest.mark.parametrize("missing, message", [
    ({"target": "filecopy"}, "give base_image_id or template"),
    ({"base_image_id": "x"}, "missing target"),
    ({"target": "nope", "template": TEMPLATE}, "no cloud plugin makes 'nope'"),
    ({"target": "filecopy",
      "base_image_id": "00000000-0000-0000-0000-000000000000"},
     "no base_image with id"),
])
def test_bad_target_requests_are_400(client, missing, message):
    answer = client.post("/imagefactory/target_images",
                         body={"target_image": missing})
    assert answer.status_int == 400
    assert message in answer.json["error"]["message"]
    assert client.store.list() == []


def test_a_snapshot_provider_image_needs_a_template_and_a_boolean(client):
    fields = {"provider": "p", "credentials": "c", "target": "filecopy",
              "target_image_id": "00000000-0000-0000-0000-000000000000"}
    for snapshot, message in (("yes", "parameters.snapshot builds from a "
                                      "template"),
                              ("maybe", "expected true or false")):
        answer = client.post("/imagefactory/provider_images", body={
            "provider_image": dict(fields, parameters={"snapshot":
                                                       snapshot})})
        assert answer.status_int == 400
        assert message in answer.json["error"]["message"]


def test_provider_images_all_routes_never_return_credentials(
        client, complete_base, tmp_path):
    base_id = complete_base["id"]
    target = client.wait(_path(client.post(
        "/imagefactory/target_images", body={"target_image": {
            "target": "filecopy", "base_image_id": base_id}}).json[
        "target_image"]))
    provider_dir = str(tmp_path)
    fields = {"provider": provider_dir, "credentials": "let-me-in",
              "target": "filecopy"}
    paths = ["/imagefactory/provider_images",
             "/imagefactory/target_images/%s/provider_images" % target["id"],
             "/imagefactory/base_images/%s/target_images/%s/provider_images"
             % (base_id, target["id"])]
    made = []
    for path in paths:
        body = dict(fields)
        if path == paths[0]:
            body["target_image_id"] = target["id"]
        answer = client.post(path, body={"provider_image": body})
        assert answer.status_int == 202, answer.text
        assert "let-me-in" not in answer.text
        image = client.wait(_path(answer.json["provider_image"]))
        assert image["_type"] == "ProviderImage"
        assert image["target_image_id"] == target["id"]
        assert image["provider"] == provider_dir
        assert image["identifier_on_provider"] == os.path.join(
            provider_dir, image["id"] + ".img")
        assert set(image) >= {"provider_account_identifier", "target"}
        made.append(image)
    nested = client.get(paths[2]).json["provider_images"]
    assert len(nested) == 3
    shown = client.get(paths[1] + "/" + made[0]["id"])
    assert shown.status_int == 200 and "let-me-in" not in shown.text
    assert len(client.get(_path(target)).json["target_image"][
        "provider_images"]) == 3
    refused = client.post(paths[0], body={"provider_image": dict(
        fields, credentials="wrong", target_image_id=target["id"])})
    failed = client.wait(_path(refused.json["provider_image"]), "FAILED")
    assert failed["status_detail"]["error"] == \
        "the provider refused the credentials"
    # DELETE takes provider and credentials in the body; the file goes.
    deleted = client.request("DELETE", paths[1] + "/" + made[0]["id"],
                             body={"provider": provider_dir,
                                   "credentials": "let-me-in"})
    assert deleted.status_int == 204, deleted.text
    assert not os.path.exists(made[0]["identifier_on_provider"])
    assert client.get(_path(made[0])).status_int == 404


def test_raw_image_streams_the_body_with_length_and_ranges(client,
                                                           complete_base):
    path = _path(complete_base) + "/raw_image"
    with open(client.store.body_path(complete_base["id"]), "rb") as handle:
        body = handle.read()
    whole = client.get(path)
    assert whole.status_int == 200
    assert whole.content_type == "application/octet-stream"
    assert whole.headers["Content-Length"] == "1000"
    assert whole.body == body
    part = client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status_int == 206
    assert part.headers["Content-Range"] == "bytes 10-19/1000"
    assert part.body == body[10:20]
    assert client.get(path, headers={"Accept": "application/json"}) \
        .status_int == 406


def test_the_build_log_from_the_database_while_it_runs_and_after(client):
    image = client.base(steps=4, step_seconds=1)
    path = _path(image) + "/build_log"

    def shown():
        answer = client.get(path)
        return "25% Step 1" in answer.text and answer
    running = poll.wait_for(shown, 30, "the log of the running build")
    assert running.content_type == "text/plain"
    assert "Step 3" not in running.text
    done = client.wait(_path(image))
    with open(client.store.log_path(done["id"])) as handle:
        assert client.get(path).text == handle.read()
    assert client.get(path, headers={"Accept": "application/json"}) \
        .status_int == 406
    assert client.get("/imagefactory/base_images/%s/build_log"
                      % ("0" * 8 + "-0000-4000-8000-" + "0" * 12)) \
        .status_int == 404


def test_raw_image_of_an_image_without_data_is_404(client):
    image = client.base(steps=50, step_seconds=0.1)
    answer = client.get(_path(image) + "/raw_image")
    assert answer.status_int == 404
    assert "has no local image data" in answer.json["error"]["message"]


def test_plugins(client):
    listed = client.get("/imagefactory/plugins").json["plugins"]
    names = [p["id"] for p in listed]
    assert "testos" in names and "filecloud" in names
    one = client.get("/imagefactory/plugins/testos").json
    assert one["_type"] == "plugin" and one["type"] == "os"
    assert one["href"] == "http://localhost/imagefactory/plugins/testos"
    assert {"name": "token", "type": "string", "default": None,
            "secret": True, "help": "a secret"} in one["parameters"]
    assert client.get("/imagefactory/plugins/nope").status_int == 404


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/imagefactory/base_images/00000000-0000-0000-0000-000000000000",
     404),
    ("GET", "/imagefactory/base_images/not-a-uuid", 404),
    ("GET", "/imagefactory/widgets", 404),
    ("GET", "/elsewhere", 404),
    ("GET", "/imagefactory/provider_images/00000000-0000-0000-0000-"
     "000000000000/raw_image", 404),
    ("PUT", "/imagefactory/base_images", 405),
    ("DELETE", "/imagefactory", 405),
    ("POST", "/imagefactory/plugins", 405),
])
def test_unknown_resources_and_methods(client, method, path, code):
    answer = client.request(method, path)
    assert answer.status_int == code
    assert answer.json["error"]["code"] == code
    if code == 405:
        assert answer.headers["Allow"]


def test_an_image_of_another_kind_is_404_in_the_wrong_collection(
        client, complete_base):
    assert client.get("/imagefactory/target_images/" + complete_base["id"]) \
        .status_int == 404


def test_405_names_the_allowed_methods(client):
    answer = client.request("PUT", "/imagefactory/base_images")
    assert answer.headers["Allow"] == "GET, POST"


def test_unsupported_accept_is_406_and_unsupported_body_415(client):
    answer = client.get("/imagefactory", headers={"Accept": "text/html"})
    assert answer.status_int == 406
    assert answer.json["error"]["code"] == 406
    assert client.get("/imagefactory", headers={
        "Accept": "text/html, application/*;q=0.5"}).status_int == 200
    request = webob.Request.blank("/imagefactory/base_images", method="POST",
                                  body=b"<template/>",
                                  content_type="text/plain")
    assert request.get_response(client.app).status_int == 415


def test_delete_a_base_image_and_a_running_build(client, complete_base):
    answer = client.request("DELETE", _path(complete_base))
    assert answer.status_int == 204
    assert client.get(_path(complete_base)).status_int == 404
    assert not os.path.exists(client.store.body_path(complete_base["id"]))
    running = client.base(steps=100, step_seconds=0.1)
    client.wait(_path(running), "BUILDING")
    started = time.monotonic()
    assert client.request("DELETE", _path(running)).status_int == 204
    assert time.monotonic() - started < 5
    assert client.store.list() == []


def _first_seen(client, ids, status, timeout=30):
    """When each image was first seen with ``status``; also the most images
    seen BUILDING at once, in one read of the store (a snapshot: one GET per
    image can see a build start before it reads the end of another)."""
    seen, most = {}, [0]

    def all_seen():
        now = {r.identifier: r.status for r in client.store.list()
               if r.identifier in ids}
        most[0] = max(most[0], sum(s == "BUILDING" for s in now.values()))
        for i, s in now.items():
            if s == status:
                seen.setdefault(i, time.monotonic())
        return len(seen) == len(ids)
    poll.wait_for(all_seen, timeout, lambda: "every build %s (seen: %s)"
                  % (status, sorted(seen)), interval=0.02)
    return seen, most[0]


def test_at_most_max_concurrent_builds_run_and_the_rest_wait_in_order(
        make_client):
    client = make_client(max_concurrent_builds=2)
    # The first build ends long before the second, so the third starts
    # alone and the fourth after it.
    ids = [client.base(steps=4, step_seconds=seconds)["id"]
           for seconds in (0.1, 0.6, 0.15, 0.1)]
    statuses = [client.get("/imagefactory/base_images/" + i).json[
        "base_image"]["status"] for i in ids]
    assert statuses[2:] == ["PENDING", "PENDING"]
    started, most = _first_seen(client, ids, "BUILDING")
    assert most == 2
    assert sorted(ids, key=started.get) == ids
    for i in ids:
        client.wait("/imagefactory/base_images/" + i)


def test_callbacks_get_every_status_in_order_retried_with_basic_auth(
        client, caplog):
    caplog.set_level(logging.DEBUG)
    with httpserver.CallbackReceiver(answers=[500, 503]) as receiver:
        url = receiver.url("hook", userinfo="ci:s3cr%2Ft")
        answer = client.post("/imagefactory/base_images", body={"base_image": {
            "template": TEMPLATE, "parameters": {
                "steps": 3, "step_seconds": 0.1, "callbacks": [url]}}})
        assert answer.status_int == 202
        image = answer.json["base_image"]
        assert "s3cr" not in answer.text
        client.wait(_path(image))
        poll.wait_for(lambda: receiver.statuses()[-1:] == [
            (image["id"], "COMPLETE")], 30, "the COMPLETE callback",
            interval=0.05)
        received = receiver.received
    assert [r["code"] for r in received[:3]] == [500, 503, 200]
    assert receiver.statuses() == [(image["id"], s) for s in
                                   ("PENDING", "BUILDING", "COMPLETE")]
    assert {r["authorization"] for r in received} == {
        "Basic " + base64.b64encode(b"ci:s3cr/t").decode()}
    assert received[-1]["body"]["base_image"]["percent_complete"] == 100
    assert all(r["path"] == "/hook" for r in received)
    assert "s3cr" not in caplog.text
    assert "s3cr" not in json.dumps(client.store.get(image["id"]).to_dict())


def test_a_bad_callback_url_is_400(client):
    answer = client.post("/imagefactory/base_images", body={"base_image": {
        "template": TEMPLATE, "parameters": {"callbacks": ["ftp://x/y"]}}})
    assert answer.status_int == 400
    assert "is not an http(s) URL" in answer.json["error"]["message"]
    assert client.store.list() == []


def test_shutdown_cancels_builds_and_refuses_new_ones(make_client):
    client = make_client(max_concurrent_builds=1)
    # (a step as long as the shutdown may take: the two POSTs and the
    # polling before it must not see the build reach step 1 on a busy host)
    running = client.base(steps=200, step_seconds=10)
    waiting = [client.base(steps=200, step_seconds=0.1) for _ in range(2)]
    client.wait(_path(running), "BUILDING")
    started = time.monotonic()
    client.service.shutdown()
    assert time.monotonic() - started < 10
    image = client.get(_path(running)).json["base_image"]
    assert image["status"] == "FAILED"
    assert image["status_detail"]["error"] == "interrupted at 0 %: Step 0"
    for pending in waiting:
        image = client.get(_path(pending)).json["base_image"]
        assert image["status"] == "FAILED"
        assert image["status_detail"]["error"] == "cancelled before it started"
    answer = client.post("/imagefactory/base_images", body={"base_image": {
        "template": TEMPLATE}})
    assert answer.status_int == 503


def test_recover_fails_the_builds_of_a_killed_daemon(client):
    """Those it cannot resume (this one names no plugin), or no build may
    resume (a snapshot push)."""
    worker = "%s:999999999" % socket.gethostname()
    record = images.ImageRecord(type=images.BASE_IMAGE,
                                status=images.BUILDING, worker=worker)
    target = images.ImageRecord(type=images.PROVIDER_IMAGE,
                                status=images.BUILDING, worker=worker)
    client.store.add(record)
    client.store.add(target)
    client.service.recover()
    failed = client.get("/imagefactory/base_images/" + record.identifier).json
    assert failed["base_image"]["status"] == "FAILED"
    error = failed["base_image"]["status_detail"]["error"]
    assert error.startswith("not resumed when the daemon started (")
    assert error.endswith(") at 0 %: Created") and "\n" not in error
    target = client.store.get(target.identifier)
    assert (target.status, target.error) == (
        images.FAILED, "the build process ended unexpectedly at 0 %: Created")


@pytest.mark.parametrize("needs_credentials", [False, True])
def test_recover_resumes_a_push_that_needs_nothing_from_its_caller(
        client, tmp_path, monkeypatch, needs_credentials):
    """A push to a clouds.yaml entry (the test plugin's providers made to
    need no credentials) is resumed by a trusted daemon; one whose
    provider takes credentials is abandoned, saying why."""
    from tests.plugins import filecloud

    def push(self, build, provider, credentials, target_image, parameters):
        build.set_identifier_on_provider(provider)
    monkeypatch.setattr(filecloud.FileCloud, "provider_needs_credentials",
                        lambda self, provider: needs_credentials)
    monkeypatch.setattr(filecloud.FileCloud, "push_image_to_provider", push)
    target = images.ImageRecord(type=images.TARGET_IMAGE, plugin="filecloud",
                                target="filecopy", status=images.COMPLETE)
    record = images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy",
        provider="@devstack", target_image_id=target.identifier,
        status=images.BUILDING, worker="%s:999999999" % socket.gethostname())
    client.store.add(target)
    client.store.add(record)
    client.service.recover()
    path = "/imagefactory/provider_images/" + record.identifier
    if not needs_credentials:
        assert client.wait(path)["identifier_on_provider"] == "@devstack"
        return
    image = client.get(path).json["provider_image"]
    assert (image["status"], image["status_detail"]["error"]) == (
        "FAILED", "not resumed when the daemon started (its provider's "
        "credentials are never stored; push it again) at 0 %: Created")


def test_recover_resumes_a_push_after_the_target_it_waits_for(
        client, complete_base, monkeypatch):
    from tests.plugins import filecloud

    def push(self, build, provider, credentials, target_image, parameters):
        with open(target_image.data, "rb") as handle:
            build.set_identifier_on_provider(handle.read()[-2:].decode())
    monkeypatch.setattr(filecloud.FileCloud, "provider_needs_credentials",
                        lambda self, provider: False)
    monkeypatch.setattr(filecloud.FileCloud, "push_image_to_provider", push)
    dead = "%s:999999999" % socket.gethostname()
    target = images.ImageRecord(
        type=images.TARGET_IMAGE, plugin="filecloud", target="filecopy",
        base_image_id=complete_base["id"], parameters={"trailer": "XY"},
        status=images.BUILDING, worker=dead)
    record = images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy",
        provider="@devstack", target_image_id=target.identifier,
        status=images.PENDING, worker=dead)
    client.store.add(record)  # listed first: the push waits all the same
    client.store.add(target)
    client.service.recover()
    assert client.wait("/imagefactory/provider_images/" + record.identifier)[
        "identifier_on_provider"] == "XY"  # the target's bytes, made anew
    assert client.store.get(target.identifier).status == images.COMPLETE


def test_an_install_script_is_answered_masked_never_in_clear(client, caplog):
    caplog.set_level(logging.DEBUG)
    script = "url --url=http://u:mirrorpw@m.example/\nrootpw --plaintext " \
             "hunter2\npoweroff\n"
    with httpserver.CallbackReceiver() as receiver:
        image = client.base(install_script=script, size=10,
                            callbacks=[receiver.url("hook")])
        done = client.wait(_path(image))
        poll.wait_for(lambda: receiver.statuses()[-1:] == [
            (image["id"], "COMPLETE")], 30, "the COMPLETE callback",
            interval=0.05)
        received = json.dumps(receiver.received)
    kept = done["parameters"]["install_script"]
    assert kept["masked"] == ("url --url=http://***@m.example/\n"
                              "rootpw --plaintext '***'\npoweroff\n")
    assert "rootpw --plaintext '***'" in received
    listed = client.get("/imagefactory/base_images").text
    for secret in ("hunter2", "mirrorpw"):
        for text in (json.dumps(done), listed, received, caplog.text):
            assert secret not in text


def test_daemon_start_up_objects_are_kept_out_of_the_cycle_collector(
        cli_env, tmp_path):
    """A list of thousands of records would otherwise walk them all."""
    conf = tmp_path / "api.conf"
    conf.write_text("[DEFAULT]\nstorage_path = %s\n[api]\nauth_strategy = "
                    "noauth\n" % (tmp_path / "store"))
    result = subprocess.run(
        [sys.executable, "-c", "import gc, sys\n"
         "from imgfac_nova.api import server\n"
         "frozen = gc.get_freeze_count()\n"
         "_, service, _ = server.setup([sys.argv[1]])\n"
         "print(frozen, gc.get_freeze_count(), gc.isenabled())\n"
         "service.shutdown()\n", str(conf)], env=cli_env,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after, collecting = result.stdout.split()
    assert (int(before), collecting) == (0, "True")
    assert int(after) > 10000  # (the libraries', the application's)

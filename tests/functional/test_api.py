"""The imgfac-nova-api daemon as a real process on loopback, with real
Keystone tokens from the test cloud (fixtures: apidaemon.py)."""
import os
import signal

import pytest
import requests

from tests import poll
from tests.functional import builds
from tests.functional.apidaemon import _call
from tests.functional.apidaemon import _image
from tests.functional.apidaemon import _post_base
from tests.functional.apidaemon import _wait
from tests.functional.test_nova_build import build_resources
from tests.unit import httpserver


def test_no_token_or_a_bad_token_is_401(make_daemon, tokens):
    daemon = make_daemon()
    for token in (None, "not-a-token"):
        for path in ("", "/base_images", "/plugins"):
            answer = _call("GET", daemon.url + path, token)
            assert answer.status_code == 401, answer.text
            assert answer.headers["WWW-Authenticate"].startswith(
                "Keystone uri=")
    assert _call("GET", daemon.url, tokens["imgfac"]).json()[
        "api_version"] == "2.0"
    assert "(auth_strategy keystone," in daemon.read_log()


def test_another_project_gets_404_and_an_empty_list(make_daemon, tokens):
    daemon = make_daemon()
    image = _post_base(daemon, tokens["imgfac"])
    _wait(daemon, tokens["imgfac"], image["id"], ("COMPLETE",))
    for path in ("/base_images/%s" % image["id"],
                 "/base_images/%s/raw_image" % image["id"],
                 "/base_images/%s/target_images" % image["id"]):
        answer = _call("GET", daemon.url + path, tokens["other"])
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == 404
    assert _call("GET", daemon.url + "/base_images", tokens["other"]).json() \
        == {"base_images": []}
    assert _call("DELETE", daemon.url + "/base_images/" + image["id"],
                 tokens["other"]).status_code == 404
    mine = _call("GET", daemon.url + "/base_images", tokens["imgfac"]).json()
    assert [i["base_image"]["id"] for i in mine["base_images"]] == \
        [image["id"]]
    # Another project's admin does not see it either (policy defaults).
    assert _call("GET", daemon.url + "/base_images/" + image["id"],
                 tokens["admin"]).status_code == 404
    # raw_image downloads the same bytes as the .body.
    raw = _call("GET", daemon.url + "/base_images/%s/raw_image" % image["id"],
                tokens["imgfac"])
    with open(os.path.join(daemon.store, image["id"] + ".body"), "rb") as f:
        assert raw.content == f.read()
    assert raw.headers["Content-Length"] == str(len(raw.content))


def test_callbacks_get_every_status_in_order_after_a_500(make_daemon, tokens):
    """An admin may send callbacks to loopback (a member may not: see
    test_a_member_may_not_reach_the_daemons_host)."""
    daemon = make_daemon()
    with httpserver.CallbackReceiver(answers=[500]) as receiver:
        image = _post_base(daemon, tokens["admin"], steps=3, step_seconds=1,
                           callbacks=[receiver.url("ci", "hook:pa55word")])
        _wait(daemon, tokens["admin"], image["id"], ("COMPLETE",))
        poll.wait_for(lambda: receiver.statuses()[-1:] == [
            (image["id"], "COMPLETE")], 60, "the COMPLETE callback", 0.2)
        received = receiver.received
    assert received[0]["code"] == 500
    assert received[0]["body"]["base_image"]["status"] == "PENDING"
    assert receiver.statuses() == [(image["id"], s) for s in
                                   ("PENDING", "BUILDING", "COMPLETE")]
    assert all(r["authorization"].startswith("Basic ") for r in received)
    assert "pa55word" not in daemon.read_log()


def test_three_builds_with_two_slots_run_two_then_one(make_daemon, tokens):
    daemon = make_daemon(max_builds=2)
    ids = [_post_base(daemon, tokens["imgfac"], steps=4, step_seconds=s)["id"]
           for s in (1.0, 2.0, 1.0)]
    seen = {"most": 0, "third started after": None}

    def all_complete():
        now = [_image(daemon, tokens["imgfac"], i)["status"] for i in ids]
        seen["most"] = max(seen["most"], now.count("BUILDING"))
        if now[2] == "BUILDING" and seen["third started after"] is None:
            seen["third started after"] = now[:2]
        assert "FAILED" not in now
        if seen["third started after"] is None:
            assert now[2] == "PENDING"
        return now == ["COMPLETE"] * 3
    poll.wait_for(all_complete, 120, "the three builds", interval=0.1)
    assert seen["most"] == 2
    assert "COMPLETE" in seen["third started after"]


def test_sigterm_cancels_builds_and_exits(make_daemon, tokens):
    daemon = make_daemon(max_builds=1)
    running = _post_base(daemon, tokens["imgfac"], steps=100, step_seconds=1)
    waiting = _post_base(daemon, tokens["imgfac"])
    _wait(daemon, tokens["imgfac"], running["id"], ("BUILDING",))
    assert daemon.stop(signal.SIGTERM, timeout=60) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(daemon.url, timeout=5)
    daemon.start()
    stopped = _image(daemon, tokens["imgfac"], running["id"])
    assert stopped["status"] == "FAILED"
    assert stopped["status_detail"]["error"].startswith("interrupted at ")
    never = _image(daemon, tokens["imgfac"], waiting["id"])
    assert (never["status"], never["status_detail"]["error"]) == \
        ("FAILED", "cancelled before it started")


# -- builds in the test cloud --------------------------------------------------

def _cloud_build(daemon, token, tmp_path, **extra):
    with open(os.path.join(builds.REPO, "examples", "test-cloud.tdl")) as f:
        template = f.read()
    import json
    with open(os.path.join(builds.REPO, "examples",
                           "test-cloud.parameters.json")) as f:
        parameters = json.load(f)
    parameters.update(install_script=builds.INSTALL_SCRIPT, **extra)
    return _post_base(daemon, token, template, **parameters)


def test_kill_9_during_the_install_then_restart_resumes_the_build(
        make_daemon, tokens, conn, tmp_path):
    """The daemon killed while a caller's build waits for its installer:
    started again, it resumes the build through the caller's trust, on the
    same installer server, to COMPLETE; nothing is left but the result."""
    daemon = make_daemon()
    image = _cloud_build(daemon, tokens["imgfac"], tmp_path,
                         jeos_cache=False)
    poll.wait_for(lambda: _image(daemon, tokens["imgfac"], image["id"])[
        "status_detail"]["activity"].startswith("Installing"), 600,
        "the build's install wait", 0.5)
    installers = [name for kind, name in build_resources(conn, image["id"])
                  if kind == "server"]
    daemon.stop(signal.SIGKILL)
    assert installers == ["imgfac-nova-%s-installer" % image["id"]]
    daemon.start()
    done = _wait(daemon, tokens["imgfac"], image["id"],
                 ("COMPLETE", "FAILED"), timeout=900)
    assert done["status"] == "COMPLETE", done["status_detail"]
    log = daemon.read_log()
    assert "Resumed build %s" % image["id"] in log
    assert "Going on with server imgfac-nova-%s-installer" % image["id"] in \
        log
    assert [kind for kind, _ in build_resources(conn, image["id"])] == [
        "result image"]
    deleted = _call("DELETE", daemon.url + "/base_images/" + image["id"],
                    tokens["imgfac"])
    assert deleted.status_code in (202, 204), deleted.text


@pytest.mark.usefixtures("nova_base_image")  # its JEOS: this build reuses it
def test_base_build_in_the_cloud_reports_live_progress(make_daemon, tokens,
                                                       conn, tmp_path):
    daemon = make_daemon()
    with open(builds.write_template(tmp_path)) as handle:
        template = handle.read()
    parameters = dict(zip(builds.NOVA_PARAMS[1::3], builds.NOVA_PARAMS[2::3]))
    image = _post_base(daemon, tokens["imgfac"], template,
                       install_script=builds.INSTALL_SCRIPT, **parameters)
    seen = []

    def finished():
        now = _image(daemon, tokens["imgfac"], image["id"])
        if not seen or seen[-1] != (now["status"], now["percent_complete"]):
            seen.append((now["status"], now["percent_complete"]))
        return now if now["status"] in ("COMPLETE", "FAILED") else None
    now = poll.wait_for(finished, 1800, "the build through the API",
                        interval=2)
    assert now["status"] == "COMPLETE", now["status_detail"]
    building = [p for s, p in seen if s == "BUILDING"]
    assert len(set(building)) >= 3 and building == sorted(building), seen
    glance_id = now["properties"]["x-image-properties-glance_id"]
    glance = conn.image.get_image(glance_id)
    assert glance.status == "active"
    assert glance.owner == conn.current_project_id
    print("progress seen through the API: %s (JEOS cache: %s)" % (
        seen, now["properties"].get("jeos_cache")))
    deleted = _call("DELETE", daemon.url + "/base_images/" + image["id"],
                    tokens["imgfac"])
    assert deleted.status_code == 204, deleted.text
    assert conn.image.find_image(glance_id) is None

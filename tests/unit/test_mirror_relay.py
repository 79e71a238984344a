"""The test cloud's web server (tools/testcloud/webserver.py): its files, and
/debian/ relayed to a mirror (here a static server on loopback standing in
for the machine's Debian mirror)."""
import email.utils
import http.client
import os
import sys
import threading

import pytest

from tests.unit import httpserver

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "tools"))
from testcloud import webserver  # noqa: E402

UDEB = b"\x21" * 300000  # larger than one relayed chunk


@pytest.fixture
def relay(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "pool/main/b").mkdir(parents=True)
    (mirror / "pool/main/b/base-installer_1.udeb").write_bytes(UDEB)
    files = tmp_path / "www"
    (files / "installer").mkdir(parents=True)
    (files / "installer/vmlinuz").write_bytes(b"kernel")
    with httpserver.StaticServer(mirror) as upstream:
        served = webserver.server(0, str(files), upstream.url())
        thread = threading.Thread(target=served.serve_forever, args=(0.05,),
                                  daemon=True)
        thread.start()
        try:
            yield served.server_port, upstream
        finally:
            served.shutdown()
            served.server_close()


def ask(port, method, path, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, headers=headers or {})
    reply = connection.getresponse()
    body = reply.read()
    connection.close()
    return reply, body


def test_relayed_get_streams_the_mirror_file(relay):
    port, upstream = relay
    reply, body = ask(port, "GET", "/debian/pool/main/b/base-installer_1.udeb")
    assert reply.status == 200 and body == UDEB
    assert reply.headers["Content-Length"] == str(len(UDEB))
    assert upstream.requests == [("GET", "/pool/main/b/base-installer_1.udeb")]


def test_head_and_missing_files_keep_the_mirror_status(relay):
    port, upstream = relay
    reply, body = ask(port, "HEAD", "/debian/pool/main/b/base-installer_1.udeb")
    assert reply.status == 200 and body == b""
    assert reply.headers["Content-Length"] == str(len(UDEB))
    reply, _ = ask(port, "GET", "/debian/pool/main/f/finish-install_1.udeb")
    assert reply.status == 404
    reply, _ = ask(port, "HEAD", "/debian/pool/main/f/finish-install_1.udeb")
    assert reply.status == 404
    assert upstream.requests[0] == ("HEAD",
                                    "/pool/main/b/base-installer_1.udeb")


def test_conditional_requests_reach_the_mirror(relay):
    port, _ = relay
    first, _ = ask(port, "GET", "/debian/pool/main/b/base-installer_1.udeb")
    later = email.utils.formatdate(
        email.utils.parsedate_to_datetime(
            first.headers["Last-Modified"]).timestamp() + 60, usegmt=True)
    reply, body = ask(port, "GET", "/debian/pool/main/b/base-installer_1.udeb",
                      {"If-Modified-Since": later})
    assert reply.status == 304 and body == b""


def test_its_own_files_are_served(relay):
    port, upstream = relay
    reply, body = ask(port, "GET", "/installer/vmlinuz")
    assert reply.status == 200 and body == b"kernel"
    assert ask(port, "GET", "/installer/nothing")[0].status == 404
    assert upstream.requests == []


def test_without_a_mirror_the_relay_says_so(tmp_path):
    served = webserver.server(0, str(tmp_path), None)
    thread = threading.Thread(target=served.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    try:
        reply, body = ask(served.server_port, "GET", "/debian/dists/x")
    finally:
        served.shutdown()
        served.server_close()
    assert reply.status == 502
    assert b"no Debian mirror in the apt configuration" in body

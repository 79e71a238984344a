"""The test cloud's fault proxy (tools/testcloud/faultproxy.py) in front of
a small upstream on loopback: it passes requests through (chunked uploads
too) with links rewritten, and fails the fraction it draws, reproducibly."""
import http.server
import json
import os
import sys
import threading

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "tools"))
from testcloud import faultproxy  # noqa: E402


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.seen.append(("GET", self.path, b""))
        base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self._answer({"links": [{"href": base + "/v2/"}]})

    def do_PUT(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if not size:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(("PUT", self.path, body))
        self._answer({"size": len(body)})

    def _answer(self, data):
        text = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def proxy_for(upstream, fraction, modes=faultproxy.MODES, seed=1):
    url = "http://127.0.0.1:%d/v2" % upstream.server_address[1]
    return faultproxy.FaultProxy({"image": url}, fraction, seed, modes,
                                 delay=0.1)


def test_passes_requests_through_with_links_rewritten(upstream):
    with proxy_for(upstream, 0.0) as proxy:
        url = proxy.endpoints["image"]
        answer = requests.get(url + "/images", timeout=10)
        assert answer.json() == {"links": [{"href": url + "/"}]}
        chunks = (b"x" * 1000 for _ in range(100))
        answer = requests.put(url + "/images/i/file", data=chunks,
                              timeout=10)
        assert answer.json() == {"size": 100000}
    assert upstream.seen[0][:2] == ("GET", "/v2/images")
    assert upstream.seen[1] == ("PUT", "/v2/images/i/file", b"x" * 100000)
    assert proxy.faults.counts["requests"] == 2


def test_a_503_is_not_forwarded(upstream):
    with proxy_for(upstream, 1.0, ("503",)) as proxy:
        answer = requests.get(proxy.endpoints["image"] + "/images",
                              timeout=10)
    assert answer.status_code == 503
    assert upstream.seen == []


@pytest.mark.parametrize("mode,forwarded", [("reset", 0), ("lost", 1)])
def test_a_reset_before_or_after_forwarding(upstream, mode, forwarded):
    with proxy_for(upstream, 1.0, (mode,)) as proxy:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(proxy.endpoints["image"] + "/images", timeout=10)
    assert len(upstream.seen) == forwarded


def test_the_same_seed_draws_the_same_faults():
    draws = []
    for _ in range(2):
        faults = faultproxy.Faults(0.3, 27)
        draws.append([faults.draw("GET", "/x") for _ in range(200)])
    assert draws[0] == draws[1]
    failed = [d for d in draws[0] if d]
    assert 40 <= len(failed) <= 80 and set(failed) == set(faultproxy.MODES)
    with pytest.raises(ValueError):
        faultproxy.Faults(0.1, 1, ("explode",))

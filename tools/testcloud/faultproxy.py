"""A fault-injecting HTTP proxy in front of the test cloud's API endpoints
(standard library only).

Each endpoint (Nova, Glance, Neutron, Cinder) gets a listener on
127.0.0.1; a client given the listener as its endpoint (clouds.yaml's
``compute_endpoint_override`` and so on: the shared catalog is left alone)
talks to the real service through it. A configured fraction of the
requests, drawn from a seeded random generator (the same seed and the same
requests: the same faults), fails in one of these ways:

- ``reset``: the connection is reset before the request is forwarded;
- ``503``: the proxy answers 503 Service Unavailable (an HTML page), as a
  load balancer with no backend does, without forwarding;
- ``lost``: the request is forwarded and done, and the connection is reset
  before the answer (the answer is lost: a create happened unseen);
- ``delay``: the request is held ``delay`` seconds, then forwarded (slow,
  not failed).

Bodies stream both ways (chunked uploads too); links in JSON answers are
rewritten to the proxy's address, so version discovery stays on it.

    python3 -m testcloud.faultproxy --fraction 0.1 --seed 7 \\
        compute=http://127.0.0.1:8774/v2.1 image=http://127.0.0.1:9292
"""
import argparse
import collections
import http.client
import http.server
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse

MODES = ("reset", "503", "lost", "delay")
CHUNK = 1024 * 1024
#: JSON answers up to this size have their links rewritten.
REWRITE_LIMIT = 4 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection",
              "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


class Faults:
    """Which request fails how: a seeded draw per request, and a count of
    the requests and faults so far (by mode)."""

    def __init__(self, fraction, seed, modes=MODES):
        unknown = set(modes) - set(MODES)
        if unknown or not modes:
            raise ValueError("fault modes are %s, not %s" % (
                ", ".join(MODES), ", ".join(sorted(unknown)) or "none"))
        self.fraction = fraction
        self.modes = tuple(modes)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.counts = collections.Counter()
        self.log = []

    def draw(self, method, path):
        """The mode of fault for this request, or None."""
        with self._lock:
            self.counts["requests"] += 1
            mode = None
            if self._random.random() < self.fraction:
                mode = self._random.choice(self.modes)
                self.counts[mode] += 1
                self.log.append((mode, method, path))
            return mode


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _proxy(self):
        server = self.server
        mode = server.faults.draw(self.command, self.path)
        if mode == "reset":
            self._body()  # read it, so the reset is not a refused write
            self._reset()
            return
        if mode == "503":
            self._body()
            text = (b"<html><body><h1>503 Service Unavailable</h1>\n"
                    b"No server is available to handle this request.\n"
                    b"</body></html>\n")  # as a load balancer says it
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if mode == "delay":
            time.sleep(server.delay)
        upstream = http.client.HTTPConnection(server.upstream.hostname,
                                              server.upstream.port,
                                              timeout=server.upstream_timeout)
        try:
            self._forward(upstream, lost=mode == "lost")
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = \
        do_OPTIONS = _proxy

    def _forward(self, upstream, lost):
        server = self.server
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in HOP_BY_HOP | {"host"}}
        headers["Host"] = server.upstream.netloc
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "")
        body = self._chunks() if chunked else self._body()
        upstream.request(self.command, self.path,
                         body=body, headers=headers,
                         encode_chunked=chunked)
        response = upstream.getresponse()
        if lost:
            response.read()
            self._reset()
            return
        self.send_response(response.status, response.reason)
        kind = response.getheader("Content-Type", "")
        length = response.getheader("Content-Length")
        data = None
        if "json" in kind and length and int(length) <= REWRITE_LIMIT:
            data = server.rewrite(response.read())
            length = str(len(data))
        for name, value in response.getheaders():
            if name.lower() in HOP_BY_HOP | {"content-length"}:
                continue
            if name.lower() == "location":
                value = server.rewrite(value.encode()).decode()
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        if data is not None:
            self.wfile.write(data)
            return
        for piece in iter(lambda: response.read(CHUNK), b""):
            self.wfile.write(piece)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            return b"".join(self._chunks())
        return self.rfile.read(length) if length else None

    def _chunks(self):
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass  # trailers
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _reset(self):
        """Close the client's connection with a TCP reset."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def log_message(self, format, *args):
        pass


class _Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True


class FaultProxy:
    """Listeners for ``upstreams`` ({service type: its URL}) on 127.0.0.1,
    failing ``fraction`` of all requests (seeded by ``seed``) in ``modes``.
    ``endpoints`` maps each service type to its listener's URL."""

    def __init__(self, upstreams, fraction, seed, modes=MODES, delay=2.0,
                 timeout=300):
        self.faults = Faults(fraction, seed, modes)
        self.endpoints = {}
        self._servers = []
        rewrites = []
        for service, url in sorted(upstreams.items()):
            upstream = urllib.parse.urlsplit(url)
            listener = _Listener(("127.0.0.1", 0), _Handler)
            listener.faults, listener.delay = self.faults, delay
            listener.upstream_timeout = timeout
            listener.upstream = upstream
            mine = "http://127.0.0.1:%d" % listener.server_address[1]
            self.endpoints[service] = mine + upstream.path
            rewrites.append((("%s://%s" % (upstream.scheme,
                                           upstream.netloc)).encode(),
                             mine.encode()))
            self._servers.append(listener)

        def rewrite(data):
            for old, new in rewrites:
                data = data.replace(old, new)
            return data
        for listener in self._servers:
            listener.rewrite = rewrite

    def start(self):
        for listener in self._servers:
            threading.Thread(target=listener.serve_forever, daemon=True,
                             name="faultproxy").start()
        return self

    def stop(self):
        for listener in self._servers:
            listener.shutdown()
            listener.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="faultproxy", description="Fail a fraction of the requests to "
        "the test cloud's endpoints; prints SERVICE=URL of each listener.")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated: %s" % ", ".join(MODES))
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("upstreams", nargs="+", metavar="SERVICE=URL")
    args = parser.parse_args(argv)
    upstreams = dict(spec.split("=", 1) for spec in args.upstreams)
    proxy = FaultProxy(upstreams, args.fraction, args.seed,
                       args.modes.split(","), args.delay).start()
    for service, url in sorted(proxy.endpoints.items()):
        print("%s=%s" % (service, url), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()
        print(dict(proxy.faults.counts), file=sys.stderr)


if __name__ == "__main__":
    main()

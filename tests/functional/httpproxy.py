"""A recording HTTP forward proxy on loopback, for functional tests.

It answers absolute-form requests (``GET http://host:port/path``, as apt
sends them to a proxy) and records each request line. The test cloud's
guests know the cloud's web server as 10.0.2.2:8090; the proxy fetches such
URLs from 127.0.0.1:8090, where that server really is. Other hosts get 502:
nothing leaves the machine.
"""
import http.client
import http.server
import threading
import urllib.parse

#: What the guests' addresses are on this machine.
GUEST_VIEW = {("10.0.2.2", 8090): ("127.0.0.1", 8090)}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _forward(self):
        self.server.requests.append("%s %s" % (self.command, self.path))
        url = urllib.parse.urlsplit(self.path)
        target = GUEST_VIEW.get((url.hostname, url.port or 80))
        if url.scheme != "http" or target is None:
            self.send_error(502, "not a test cloud URL")
            return
        upstream = http.client.HTTPConnection(*target, timeout=30)
        try:
            upstream.request(self.command, url.path or "/",
                             headers={"Host": url.netloc})
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding",
                                    "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _forward

    def log_message(self, format, *args):
        pass


class RecordingProxy:
    """The proxy on 127.0.0.1 (a free port); ``requests`` lists what it got."""

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      _Handler)
        self.server.requests = []
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return list(self.server.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

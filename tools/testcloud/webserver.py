"""The test cloud's web server: its files, and a route to a Debian mirror.

``python3 -m testcloud.webserver PORT DIRECTORY`` serves DIRECTORY on
127.0.0.1:PORT (the test installer, the package repository; guests reach it
as http://10.0.2.2:PORT/) and relays ``/debian/...`` to the Debian mirror of
the machine's apt configuration, read when the server starts. That stands
for a cloud network's route to a mirror: test-cloud guests reach nothing but
this server. GET and HEAD only; the mirror's status, the headers a client
needs and the body go back as they come (streamed), so what the mirror
lacks stays a 404.
"""
import functools
import http.server
import shutil
import sys
import urllib.error
import urllib.request

from testcloud import guests

PREFIX = "/debian/"
#: Request headers passed on to the mirror, and reply headers passed back.
REQUEST_HEADERS = ("Range", "If-Modified-Since", "If-None-Match",
                   "If-Range", "Cache-Control")
REPLY_HEADERS = ("Content-Type", "Content-Length", "Content-Range",
                 "Last-Modified", "ETag", "Accept-Ranges", "Cache-Control",
                 "Expires")
_CHUNK = 256 * 1024


class Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the directory; ``/debian/`` from ``mirror`` (None: 502)."""

    mirror = None

    def do_GET(self):
        if self.path.startswith(PREFIX):
            return self._relay(body=True)
        return super().do_GET()

    def do_HEAD(self):
        if self.path.startswith(PREFIX):
            return self._relay(body=False)
        return super().do_HEAD()

    def _relay(self, body):
        if not self.mirror:
            self.send_error(502, "no Debian mirror in the apt configuration")
            return
        url = self.mirror.rstrip("/") + "/" + self.path[len(PREFIX):]
        request = urllib.request.Request(url, method=self.command)
        for name in REQUEST_HEADERS:
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            reply = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            reply = exc  # 304, 404, ...: passed on as they are
        except OSError as exc:
            self.send_error(502, "the Debian mirror did not answer: %s"
                            % getattr(exc, "reason", exc))
            return
        with reply:
            self.send_response(reply.status)
            for name in REPLY_HEADERS:
                if reply.headers.get(name):
                    self.send_header(name, reply.headers[name])
            if reply.headers.get("Content-Length") is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if body and reply.status not in (204, 304):
                shutil.copyfileobj(reply, self.wfile, _CHUNK)


def server(port, directory, mirror, host="127.0.0.1"):
    """A threading HTTP server on ``host:port`` (not yet serving)."""
    handler = type("MirrorHandler", (Handler,), {"mirror": mirror})
    return http.server.ThreadingHTTPServer(
        (host, port), functools.partial(handler, directory=directory))


def main(argv):
    port, directory = int(argv[0]), argv[1]
    try:
        mirror = guests.debian_mirror()
    except (OSError, RuntimeError) as exc:
        print("no Debian mirror to relay: %s" % exc, file=sys.stderr)
        mirror = None
    httpd = server(port, directory, mirror)
    print("serving %s on 127.0.0.1:%d%s" % (
        directory, port, ", %s relayed" % PREFIX if mirror else ""),
        file=sys.stderr, flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

"""A static HTTP server on 127.0.0.1 for tests, counting the requests it gets."""
import functools
import http.server
import threading


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_head(self):
        self.server.requests.append((self.command, self.path))
        return super().send_head()


class StaticServer:
    """Serves ``directory``; ``url(path)`` is the URL of a file in it."""

    def __init__(self, directory):
        handler = functools.partial(_Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)

    @property
    def requests(self):
        return self.httpd.requests

    def url(self, path=""):
        return "http://127.0.0.1:%d/%s" % (self.httpd.server_port, path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_PUT(self):
        import json
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            code = server.answers.pop(0) if server.answers else 200
            server.received.append({"path": self.path, "code": code,
                                    "authorization":
                                        self.headers.get("Authorization"),
                                    "body": body})
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class CallbackReceiver:
    """Takes PUTs on 127.0.0.1; answers the status codes in ``answers`` in
    turn (then 200) and keeps every request in ``received``."""

    def __init__(self, answers=()):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     _CallbackHandler)
        self.httpd.answers = list(answers)
        self.httpd.received = []
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)

    @property
    def received(self):
        with self.httpd.lock:
            return list(self.httpd.received)

    def statuses(self, code=200):
        """(image id, status) of the requests answered with ``code``."""
        return [(r["body"][next(iter(r["body"]))]["id"],
                 r["body"][next(iter(r["body"]))]["status"])
                for r in self.received if r["code"] == code]

    def url(self, path="", userinfo=""):
        return "http://%s127.0.0.1:%d/%s" % (
            userinfo + "@" if userinfo else "", self.httpd.server_port, path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

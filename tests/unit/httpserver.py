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

"""One table from (method, path) to handler, and errors as JSON.

Handlers take ``(request, **path_values)`` and return a webob Response; they
raise :class:`ApiError` for anything the client did wrong.
"""
import json
import logging
import re

import webob

LOG = logging.getLogger(__name__)

JSON = "application/json"


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, code, message, headers=None):
        super().__init__(message)
        self.code = code
        self.message = " ".join(str(message).split())
        self.headers = headers or {}


def json_response(body, status=200):
    response = webob.Response(status=status, content_type=JSON, charset=None)
    response.body = json.dumps(body, sort_keys=True).encode()
    return response


def error_response(code, message, headers=None):
    response = json_response({"error": {"code": code, "message": message}},
                             status=code)
    response.headers.update(headers or {})
    return response


def _compile(pattern):
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile("^%s/?$" % regex)


class Router:
    """A WSGI application dispatching on ``routes``: ``[(method, pattern,
    handler)]`` where patterns hold ``{name}`` path segments."""

    def __init__(self, routes):
        self._routes = [(method, _compile(pattern), handler)
                        for method, pattern, handler in routes]

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            if exc.code >= 500:
                LOG.error("%s %s: %s", request.method, request.path,
                          exc.message)
            response = error_response(exc.code, exc.message, exc.headers)
        except Exception:
            LOG.exception("%s %s failed", request.method, request.path)
            response = error_response(
                500, "internal error (request %s); the daemon's log has the "
                "details" % environ.get("openstack.request_id", "-"))
        return response(environ, start_response)

    def _dispatch(self, request):
        allowed = []
        for method, regex, handler in self._routes:
            match = regex.match(request.path_info)
            if not match:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            media_type = getattr(handler, "media_type", JSON)
            if not request.accept.acceptable_offers([media_type]):
                raise ApiError(406, "this resource is %s; the request accepts "
                               "only %s" % (media_type, request.accept))
            return handler(request, **match.groupdict())
        if allowed:
            raise ApiError(405, "%s is not allowed on %s (allowed: %s)" % (
                request.method, request.path_info, ", ".join(sorted(allowed))),
                headers={"Allow": ", ".join(sorted(allowed))})
        raise ApiError(404, "no resource %s" % request.path_info)

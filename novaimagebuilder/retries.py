"""Riding out the cloud's transient failures with keystoneauth's own retries.

Every session a build talks to the cloud through is a :class:`Session`:
keystoneauth's, which retries a request after a connection failure
(refused, reset, or no connection in time) or an HTTP 502, 503 or 504
answer, with its exponential backoff (0.5 s, 1 s, 2 s, 4 s) -- but only a
request that may be sent again: GET, HEAD, OPTIONS, DELETE (a repeated
delete finds nothing, and callers ignore that), and a PUT whose body is
whole in memory (not a streamed upload). A POST or PATCH (a create, a
server action, an image patch) is sent once by keystoneauth; when its
answer is lost, :func:`send_once` looks for what it did before sending it
again. A request
sent and not answered within the session's timeout is not retried either:
an endpoint that hangs fails the step after one timeout, not five.

clouds.yaml's ``connect_retries``, ``status_code_retries`` and
``retriable_status_codes`` (also per service: ``compute_status_code_retries``)
replace these defaults for the requests that may be retried. Each retry is
one INFO line of this module's logger naming the request (in the build
log; the terminal shows it with --verbose).
"""
import logging

import requests
from keystoneauth1 import session as ksa_session

from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)
_KSA_LOG = logging.getLogger("keystoneauth.session")

#: Retries of a request that may be repeated (keystoneauth waits 0.5 s,
#: then twice as long before each next one: 7.5 s in all).
RETRIES = 4
RETRIABLE_STATUS_CODES = [502, 503, 504]
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def repeatable(method, data=None):
    """True when a request may be sent again after a failure."""
    method = method.upper()
    if method in IDEMPOTENT:
        return True
    return method == "PUT" and (data is None or isinstance(data, (str,
                                                                  bytes)))


class Session(ksa_session.Session):
    """A keystoneauth Session that retries what may be repeated and logs
    each retry (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("session") is None:
            # (keystoneauth < 5.18, as OpenStack's upper-constraints may
            # pin it, has no TLS options: pass them only when given)
            adapter = _NoAnswerAdapter(**{
                name: kwargs[name] for name in ("tls_ciphers",
                                                "tls_min_version")
                if kwargs.get(name) is not None})
            for scheme in list(self.session.adapters):
                self.session.mount(scheme, adapter)

    def request(self, url, method, **kwargs):
        if repeatable(method, kwargs.get("data")):
            if kwargs.get("connect_retries") is None:
                kwargs["connect_retries"] = RETRIES
            kwargs.setdefault("status_code_retries", RETRIES)
            kwargs.setdefault("retriable_status_codes",
                              RETRIABLE_STATUS_CODES)
        else:
            kwargs["connect_retries"] = kwargs["status_code_retries"] = 0
        if kwargs.get("logger") is None:
            service = (kwargs.get("endpoint_filter") or {}).get(
                "service_type")
            kwargs["logger"] = _RequestLog(" ".join(
                part for part in (service, method.upper(), url) if part))
        return super().request(url, method, **kwargs)


class NoAnswer(requests.exceptions.RequestException):
    """The request was sent and not answered in time (keystoneauth would
    take requests' ReadTimeout for a connection failure and retry it)."""


class _NoAnswerAdapter(ksa_session.TCPKeepAliveAdapter):
    def send(self, *args, **kwargs):
        try:
            return super().send(*args, **kwargs)
        except requests.exceptions.ReadTimeout as exc:
            raise NoAnswer(str(exc), request=exc.request) from None


class _RequestLog(logging.LoggerAdapter):
    """keystoneauth's logger for one request: its debug lines go where they
    always do; its warnings (the retries) are one INFO line of this
    module's logger, naming the request."""

    def __init__(self, request):
        super().__init__(_KSA_LOG, {})
        self.request = request

    def warning(self, msg, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], dict):
            args = args[0]
        text = (msg % args if args else msg).replace("\n", " ")
        LOG.info("%s: %s", self.request, text)


def send_once(what, send, made, timeout=120, cancel=None, log=None,
              explain=None, attempts=None):
    """Send a request that may not be repeated blindly (a create, a server
    action, an image patch): ``send()``; when its answer is lost (the
    connection failed, or a gateway answered 502/503/504: it may or may
    not have been done), ``made()`` says whether it was done -- what it
    returns, when not None, is the result -- and if not, it is sent again,
    for up to ``timeout`` seconds (and at most ``attempts`` times). Any
    other error is a one-line BuildError (``explain``: the exception's
    line; default cloud.explain), as is giving up."""
    log = log or LOG
    explain = explain or cloud.explain
    last = {"error": None}
    for attempt, _ in enumerate(waiter.iterate(timeout, lambda: "%s: %s" % (
            what, last["error"]), cancel=cancel)):
        if attempts is not None and attempt >= attempts:
            raise errors.BuildError("%s: %s (sent %d times)" % (
                what, last["error"], attempts))
        try:
            return send()
        except errors.BuildError:
            raise
        except Exception as exc:
            if not lost(exc):
                raise errors.BuildError("%s: %s" % (what, explain(exc))) \
                    from None
            last["error"] = explain(exc)
        found = cloud.call("%s (looking for it after a lost answer)" % what,
                           made)
        if found is not None:
            log.info("%s: the answer was lost (%s); it was done", what,
                     last["error"])
            return found
        log.info("%s: the answer was lost (%s) and it was not done; sending "
                 "it again", what, last["error"])


def lost(exc):
    """True when a request failed without saying whether it was done: the
    connection failed or timed out, or a gateway answered 502/503/504."""
    from keystoneauth1 import exceptions as ksa
    cause = exc
    while cause is not None:
        status = getattr(cause, "status_code", None) or getattr(
            cause, "code", None)  # openstacksdk's, glanceclient's
        if isinstance(cause, ksa.RetriableConnectionFailure) or \
                status in RETRIABLE_STATUS_CODES:
            return True
        cause = cause.__cause__ or cause.__context__
    return False

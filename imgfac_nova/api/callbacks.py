"""Status callbacks: an HTTP PUT of the image JSON to each URL a build names
in ``parameters.callbacks``, on every status change, in order.

A failed PUT (no answer, or a 5xx) is retried with backoff through the one
waiter for ``callback_retry_seconds``; a 4xx is the receiver's final answer.
``user:password@`` in a URL is sent as Basic auth and never logged: the
URLs are kept in memory only, and logs show them without credentials.
"""
import collections
import logging
import threading
import urllib.parse

import requests

from novaimagebuilder import errors
from novaimagebuilder import scrub
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10


def split_credentials(url):
    """``(url without user:password@, (user, password) or None)``; raises
    ValueError for a URL that is not http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("callback %r is not an http(s) URL"
                         % scrub.scrub(url))
    netloc = parts.hostname if ":" not in parts.hostname else \
        "[%s]" % parts.hostname
    if parts.port:
        netloc += ":%d" % parts.port
    auth = None
    if parts.username is not None:
        auth = (urllib.parse.unquote(parts.username),
                urllib.parse.unquote(parts.password or ""))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), auth


class Notifier:
    """Sends the callbacks of every build; :meth:`close` lets them finish."""

    def __init__(self, retry_seconds):
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._senders = []
        self._lock = threading.Lock()

    def sender(self, urls, render):
        """An ``on_change(record)`` hook for one request's builds: PUTs
        ``render(record)`` to ``urls`` when a record's status changes."""
        sender = _Sender([split_credentials(u) for u in urls], render, self)
        with self._lock:
            self._senders = [s for s in self._senders if s.busy()] + [sender]
        return sender

    def close(self, timeout):
        """Wait up to ``timeout`` seconds for pending callbacks, then stop
        retrying."""
        with self._lock:
            senders = list(self._senders)
        for sender in senders:
            sender.join(timeout)
        self._stop.set()


class _Sender:
    def __init__(self, targets, render, notifier):
        self._targets = targets
        self._render = render
        self._notifier = notifier
        self._last = {}
        self._pending = collections.deque()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = None
        self._http = requests.Session()

    def __call__(self, record):
        with self._lock:
            if self._last.get(record.identifier) == record.status:
                return
            self._last[record.identifier] = record.status
            self._pending.append(self._render(record))
            if self._thread is None:
                self._idle.clear()
                self._thread = threading.Thread(
                    target=self._drain, daemon=True,
                    name="callbacks-%s" % record.identifier)
                self._thread.start()

    def busy(self):
        return not self._idle.is_set()

    def join(self, timeout):
        self._idle.wait(timeout)

    def _drain(self):
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    self._idle.set()
                    return
                body = self._pending.popleft()
            for url, auth in self._targets:
                self._put(url, auth, body)

    def _put(self, url, auth, body):
        status = next(iter(body.values()))["status"]
        reason = None
        try:
            for _ in waiter.iterate(
                    self._notifier.retry_seconds,
                    lambda: "callback %s kept failing: %s" % (url, reason),
                    interval=1.0, max_interval=30.0, backoff=2.0,
                    cancel=self._notifier._stop):
                try:
                    answer = self._http.put(url, json=body, auth=auth,
                                            timeout=REQUEST_TIMEOUT)
                except requests.RequestException as exc:
                    reason = scrub.one_line(exc)
                    continue
                if answer.status_code < 500:
                    if answer.status_code >= 400:
                        LOG.warning("Callback %s refused status %s: HTTP %d",
                                    url, status, answer.status_code)
                    return
                reason = "HTTP %d" % answer.status_code
                LOG.info("Callback %s answered %s for status %s; retrying",
                         url, reason, status)
        except errors.WaitTimeout as exc:
            LOG.warning("Gave up on status %s: %s", status, exc)
        except errors.Cancelled:
            LOG.warning("Callback %s of status %s not sent: the daemon is "
                        "stopping", url, status)

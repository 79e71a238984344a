"""Credentials out of URLs, wherever text leaves a build.

A URL may carry a user and password (``https://user:secret@mirror/``) or a
token (``https://TOKEN@host/``). :func:`scrub` replaces that userinfo with
``***``; the front end applies it to progress lines, errors and stored
fields, and :func:`install` to log handlers, so a log line (traceback
included) never shows it.
"""
import logging
import re

MASK = "***"

#: A scheme, "://", then the userinfo: everything up to the authority's
#: last "@" (a password may hold an unescaped "@").
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>@]*(?:@[^/?#\s\"'<>@]*)*@")


def scrub(text):
    """``text`` with the userinfo of every URL in it replaced by ``***``."""
    if not isinstance(text, str) or "@" not in text:
        return text
    return _USERINFO.sub(r"\g<scheme>" + MASK + "@", text)


class ScrubbingFormatter(logging.Formatter):
    """Formats with another formatter, then scrubs the result: the message,
    a traceback and any summary the formatter adds (oslo.log appends the
    exception being handled) alike."""

    def __init__(self, formatter):
        super().__init__()
        self.formatter = formatter or logging.Formatter()

    def format(self, record):
        return scrub(self.formatter.format(record))


def install(handler):
    """Make ``handler`` scrub what it writes (once; safe to repeat)."""
    if not isinstance(handler.formatter, ScrubbingFormatter):
        handler.setFormatter(ScrubbingFormatter(handler.formatter))
    return handler

"""Credentials out of URLs, wherever text leaves a build.

A URL may carry a user and password (``https://user:secret@mirror/``) or a
token (``https://TOKEN@host/``). :func:`scrub` replaces that userinfo with
``***``; the front end applies it to progress lines, errors and stored
fields, and :func:`install` to log handlers, so a log line (traceback
included) never shows it. Request bodies logged at DEBUG lose their
``user_data`` and ``adminPass`` values the same way.
"""
import logging
import re

MASK = "***"

#: A scheme, "://", then the userinfo: everything up to the authority's
#: last "@" (a password may hold an unescaped "@").
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>@]*(?:@[^/?#\s\"'<>@]*)*@")


#: JSON fields holding secrets in the request and response bodies that
#: keystoneauth logs at DEBUG: Nova's user data (it carries a build's SSH
#: host key) and admin password.
_SECRET_FIELDS = re.compile(r'("(?:user_data|adminPass)"\s*:\s*")[^"]*"')


def scrub(text):
    """``text`` with the userinfo of every URL in it, and the values of the
    secret JSON fields, replaced by ``***``."""
    if not isinstance(text, str):
        return text
    if '"' in text:
        text = _SECRET_FIELDS.sub(r"\g<1>" + MASK + '"', text)
    if "@" not in text:
        return text
    return _USERINFO.sub(r"\g<scheme>" + MASK + "@", text)


def one_line(exc):
    """A one-line human description of an exception, URLs scrubbed."""
    text = str(exc).strip().splitlines()
    return scrub(text[0]) if text else type(exc).__name__


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

"""The records' database errors, as one line without the URL's password:
what both ways of reaching the database share (oslo.db's engine facade in
:mod:`imgfac_nova.db.api`, a one-off read in :mod:`imgfac_nova.db.read_once`)
and what needs SQLAlchemy alone."""
import re

import sqlalchemy as sa


class DatabaseError(Exception):
    """The database cannot be used; str() is one line, without secrets."""


class DuplicateEntry(DatabaseError):
    pass


def redact(url):
    """``url`` with its password replaced by ``***``."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def reason(exc):
    """One line saying why ``exc`` (an oslo.db, SQLAlchemy or driver error,
    or the ImportError of a missing driver) happened: the driver's own
    words where there are some."""
    if isinstance(exc, ImportError):
        return "its driver is missing (%s)" % exc
    # (oslo.db's errors wrap SQLAlchemy's, which wrap the driver's)
    while getattr(exc, "inner_exception", None) is not None:
        exc = exc.inner_exception
    exc = getattr(exc, "orig", None) or exc
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].strip()


def failed(redacted_url, exc, connected):
    """The DatabaseError saying that using (``connected``) or connecting to
    the database ``redacted_url`` failed with ``exc``."""
    if connected:
        return DatabaseError("database %s: %s" % (redacted_url, reason(exc)))
    return DatabaseError("cannot connect to the database %s: %s"
                         % (redacted_url, reason(exc)))

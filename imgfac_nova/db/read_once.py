"""One read of the records' database by a process that reads once and ends
(``imgfac-nova images``): on a connection of its own, without oslo.db's
engine facade, whose import (SQLAlchemy's ORM with it) takes longer than
reading 10,000 records. Everything else reaches the database through
:mod:`imgfac_nova.db.api`."""
import contextlib

import sqlalchemy as sa

from imgfac_nova.db import errors


@contextlib.contextmanager
def connection(url):
    """A connection to the database ``url`` in a read transaction, closed
    at the end; errors as :class:`errors.DatabaseError`."""
    redacted = errors.redact(url)
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        conn = engine.connect()
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise errors.failed(redacted, exc, False) from exc
    try:
        with conn.begin():
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise errors.failed(redacted, exc, True) from exc
    finally:
        conn.close()
        engine.dispose()

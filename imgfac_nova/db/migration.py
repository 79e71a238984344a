"""The schema's version and its upgrade, by alembic (``migrations/``).

Checking a database that is up to date reads one row and loads no alembic
script, so commands that only list records start fast.
"""
import os

import sqlalchemy as sa

from imgfac_nova.db import errors

#: The newest revision in migrations/versions (a unit test checks it is
#: alembic's head): the schema this release reads and writes.
HEAD = "0003"
#: alembic's version table: ours, beside the one of TaskFlow's own
#: migrations (its persistence tables live in the same database).
VERSION_TABLE = "imgfac_nova_alembic_version"
_SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "migrations")


def current(database):
    """The database's revision; None when it has no schema yet."""
    with database.reader() as session:
        return of_connection(session.connection())


def of_connection(conn):
    """The revision of the database of connection ``conn``; None when it
    has no schema yet."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(
        "SELECT version_num FROM %s" % VERSION_TABLE)).scalar()


def _config(conn=None):
    from alembic import config
    cfg = config.Config()
    cfg.set_main_option("script_location", _SCRIPTS)
    cfg.attributes["connection"] = conn
    return cfg


def _known(revision):
    from alembic import script
    from alembic import util
    try:
        return script.ScriptDirectory.from_config(_config()).get_revision(
            revision) is not None
    except util.CommandError:  # "Can't locate revision ..."
        return False


def upgrade(database):
    """Bring the schema to :data:`HEAD`; returns ``(before, after)``."""
    from alembic import command
    with database.connection() as conn:
        before = of_connection(conn)
        if before != HEAD:
            _check_not_newer(database, before)
            command.upgrade(_config(conn), "head")
        return before, of_connection(conn)


def ensure(database):
    """Make sure the schema is :data:`HEAD`: an SQLite database is upgraded
    here (it is a file beside the images: nobody else to ask); a server's
    is the operator's to upgrade, with ``imgfac-nova-manage db sync``."""
    revision = current(database)
    if revision == HEAD:
        return
    _check_not_newer(database, revision)
    if database.is_sqlite:
        upgrade(database)
        return
    raise errors.DatabaseError(
        "the database %s has %s, this imgfac-nova needs schema %s: run "
        "'imgfac-nova-manage db sync'" % (
            database.redacted_url, "schema %s" % revision if revision
            else "no schema", HEAD))


def _check_not_newer(database, revision):
    if revision is not None and not _known(revision):
        raise errors.DatabaseError(
            "the database %s has schema %s, newer than this imgfac-nova "
            "knows (%s): upgrade imgfac-nova" % (
                database.redacted_url, revision, HEAD))

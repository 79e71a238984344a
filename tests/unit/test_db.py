"""The database under the image store: migrations, the schema check, the
connection errors, imgfac-nova-manage (SQLite; MariaDB and PostgreSQL in
tests/functional/test_database.py)."""
import contextlib
import os
import sqlite3
import subprocess
import sys

import pytest
from alembic import autogenerate
from alembic import script
from alembic.runtime import migration as alembic_migration

from imgfac_nova import images
from imgfac_nova import manage
from imgfac_nova import store
from imgfac_nova.db import api
from imgfac_nova.db import errors
from imgfac_nova.db import migration
from imgfac_nova.db import models


def _database(tmp_path):
    return api.Database(store.default_connection(str(tmp_path)))


def test_head_is_alembics_head():
    scripts = script.ScriptDirectory.from_config(migration._config())
    assert scripts.get_heads() == [migration.HEAD]


def test_migrations_up_from_empty_match_the_models(tmp_path):
    database = _database(tmp_path)
    assert migration.current(database) is None
    assert migration.upgrade(database) == (None, migration.HEAD)
    assert migration.upgrade(database) == (migration.HEAD, migration.HEAD)
    with database.connection() as conn:
        context = alembic_migration.MigrationContext.configure(
            conn, opts={"version_table": migration.VERSION_TABLE})
        assert autogenerate.compare_metadata(context, models.metadata) == []
    # every record field has its column, and the build's own
    assert set(images.FIELDS) | {"id", "cancel_requested", "extra"} == set(
        models.images.columns.keys())


def test_store_upgrades_an_empty_sqlite_database_by_itself(tmp_path):
    sqlite3.connect(str(tmp_path / store.SQLITE_NAME)).close()
    store.ImageStore(str(tmp_path)).open()
    assert migration.current(_database(tmp_path)) == migration.HEAD


def test_another_librarys_alembic_version_is_left_alone(tmp_path):
    # (TaskFlow's persistence keeps its revision in alembic_version)
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db, db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        db.execute("INSERT INTO alembic_version VALUES ('14b227d79a87')")
    s = store.ImageStore(str(tmp_path))
    record = s.add(images.ImageRecord(type=images.BASE_IMAGE))
    assert s.get(record.identifier).identifier == record.identifier
    assert migration.current(_database(tmp_path)) == migration.HEAD
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db:
        assert db.execute("SELECT version_num FROM alembic_version")\
            .fetchall() == [("14b227d79a87",)]


def test_schema_newer_than_this_release_is_one_line(tmp_path):
    store.ImageStore(str(tmp_path)).open()
    with contextlib.closing(sqlite3.connect(
            str(tmp_path / store.SQLITE_NAME))) as db, db:
        db.execute("UPDATE %s SET version_num = 'f00d'"
                   % migration.VERSION_TABLE)
    with pytest.raises(store.StoreError, match=(
            "has schema f00d, newer than this imgfac-nova knows")):
        store.ImageStore(str(tmp_path)).list()


def test_server_schema_behind_says_run_db_sync(tmp_path, monkeypatch):
    # A server database is never upgraded by the CLI or the daemon; the
    # SQLite file stands in for one here (the functional tests use real
    # servers).
    monkeypatch.setattr(api.Database, "is_sqlite", False)
    database = _database(tmp_path)
    with pytest.raises(errors.DatabaseError) as exc:
        migration.ensure(database)
    assert str(exc.value) == (
        "the database %s has no schema, this imgfac-nova needs schema %s: "
        "run 'imgfac-nova-manage db sync'" % (database.url, migration.HEAD))
    assert migration.current(database) is None


@pytest.mark.parametrize("url, shown", [
    ("mysql+pymysql://imgfac:s3cr%40t@127.0.0.1:1/imgfac",
     "mysql+pymysql://imgfac:***@127.0.0.1:1/imgfac"),
    ("postgresql+psycopg2://imgfac:s3cr%40t@127.0.0.1:1/imgfac",
     "postgresql+psycopg2://imgfac:***@127.0.0.1:1/imgfac"),
])
def test_unreachable_database_is_one_line_without_password(url, shown):
    with pytest.raises(store.StoreError) as exc:
        store.ImageStore("/nonexistent-imgfac", {"connection": url,
                                                 "max_retries": 0}).list()
    message = str(exc.value)
    assert message.startswith("cannot connect to the database %s: " % shown)
    assert "s3cr" not in message and "\n" not in message


def test_redact():
    assert errors.redact("mysql+pymysql://u:pw@h/db?charset=utf8") == \
        "mysql+pymysql://u:***@h/db?charset=utf8"
    assert errors.redact("sqlite:////var/lib/x.sqlite") == \
        "sqlite:////var/lib/x.sqlite"


def _conf(tmp_path, connection=None):
    path = tmp_path / "imgfac-nova.conf"
    text = "[DEFAULT]\nstorage_path = %s\n" % (tmp_path / "store")
    if connection:
        text += "[database]\nconnection = %s\n" % connection
    path.write_text(text)
    return str(path)


def test_manage_db_version_and_sync(tmp_path, capsys):
    conf = _conf(tmp_path)
    assert manage.main(["--config-file", conf, "db", "version"]) == 0
    assert capsys.readouterr().out == "none\n"
    assert manage.main(["--config-file", conf, "db", "sync"]) == 0
    assert capsys.readouterr().out == "Database sqlite:///%s: schema %s " \
        "(was none)\n" % (tmp_path / "store" / store.SQLITE_NAME,
                          migration.HEAD)
    assert manage.main(["--config-file", conf, "db", "sync"]) == 0
    assert capsys.readouterr().out.endswith(": schema %s\n" % migration.HEAD)
    assert manage.main(["--config-file", conf, "db", "version"]) == 0
    assert capsys.readouterr().out == migration.HEAD + "\n"


BAD = "mysql+pymysql://imgfac:sekrit@127.0.0.1:1/imgfac"


@pytest.mark.parametrize("module, verb", [
    ("imgfac_nova.cli", ["images"]),
    ("imgfac_nova.manage", ["db", "sync"]),
    ("imgfac_nova.api.server", []),
])
def test_commands_say_an_unreachable_database_in_one_line(tmp_path, module,
                                                          verb):
    result = subprocess.run(
        [sys.executable, "-m", module, "--config-file", _conf(tmp_path, BAD)]
        + verb, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ": error: cannot connect to the database mysql+pymysql://" in \
        lines[0]
    assert "127.0.0.1:1/imgfac: " in lines[0]
    assert "sekrit" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("api, words", [
    ("auth_strategy = noauth\nbind_host = 0.0.0.0\n",
     "refused unless bind_host is a loopback address"),
    ("auth_strategy = noauth\nurl_denied_networks = 10.0.0.0/33\n",
     "[api] url_denied_networks: "),
    ("auth_strategy = noauth\ncert_file = /nonexistent/cert.pem\n"
     "key_file = /nonexistent/key.pem\n",
     "[api] cert_file /nonexistent/cert.pem, key_file /nonexistent/key.pem: "
     "No such file or directory"),
])
def test_the_daemon_checks_its_options_before_its_database(
        tmp_path, api, words):
    conf = _conf(tmp_path)
    with open(conf, "a") as handle:
        handle.write("[api]\nbind_port = 0\n" + api)
    result = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.api.server", "--config-file",
         conf], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert lines[0].startswith("imgfac-nova-api: error: ")
    assert not (tmp_path / "store").exists()


def test_an_sqlite_file_stays_open_between_transactions(tmp_path):
    """oslo.db would open (and set up) an SQLite file for each transaction;
    its connections are kept, in every thread, as a server's are."""
    import threading

    import sqlalchemy as sa
    database = _database(tmp_path)
    with database.writer() as session:
        session.execute(sa.text("CREATE TABLE t (n INTEGER)"))
    opened = []
    sa.event.listen(database._facade.writer.get_engine(), "connect",
                    lambda *args: opened.append(args))

    def transactions():
        for n in range(5):
            with database.writer() as session:
                session.execute(sa.text("INSERT INTO t VALUES (%d)" % n))
            with database.reader() as session:
                session.execute(sa.text("SELECT count(*) FROM t")).scalar()
    transactions()
    assert opened == []
    other = threading.Thread(target=transactions)
    other.start()
    other.join()
    with database.reader() as session:
        assert session.execute(sa.text("SELECT count(*) FROM t")).scalar() \
            == 10
    assert len(opened) <= 1


def test_an_sqlite_commit_outlives_the_process_unflushed(tmp_path):
    """Write-ahead log, its commits not flushed to the disk (they survive
    a killed process, not a power loss), every connection alike."""
    url = store.default_connection(str(tmp_path))
    database = api.database(url)  # (its pool is the parent's alone)
    migration.upgrade(database)
    for _ in range(2):
        with database.reader() as session:
            conn = session.connection()
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == \
                "wal"
            # 1: NORMAL (2, FULL, is SQLite's default)
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    pid = os.fork()
    if pid == 0:
        with database.writer() as session:
            session.execute(models.images.insert().values(
                identifier="x", type="BaseImage", status="NEW",
                percent_complete=0, status_detail={}, created="c",
                updated="u", parameters={}, properties={}, timings={},
                extra={}))
        os._exit(9)  # no clean-up, no checkpoint
    assert os.waitpid(pid, 0)[1] >> 8 == 9
    with api.Database(url).reader() as session:
        assert session.execute(models.images.select()).one().identifier == "x"

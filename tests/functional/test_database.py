"""The image store, its migrations and TaskFlow's flow persistence on each
database it supports: SQLite (the default file), MariaDB (the test cloud's,
a database and user of this test's own) and PostgreSQL (Debian's package, a
private cluster this module starts on a socket of its own)."""
import contextlib
import functools
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid

import pytest
import sqlalchemy as sa

from imgfac_nova import images
from imgfac_nova import manage
from imgfac_nova import store
from imgfac_nova.db import api
from imgfac_nova.db import errors
from imgfac_nova.db import migration
from imgfac_nova.db import models
from imgfac_nova.db import records
from tests import poll
from tests.unit import test_meta_import
from tests.unit.test_pipeline import fakes  # noqa: F401 (fixture)

PASSWORD = "db-pw-" + uuid.uuid4().hex[:8]


def _mariadb(socket, statements):
    subprocess.run(["mariadb", "--no-defaults", "--socket=%s" % socket,
                    "-u", "root", "--batch"], input=statements, text=True,
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def mariadb(test_cloud):
    """A database and user of this test's own in the test cloud's MariaDB
    (tools/testcloud/database.py makes the services' the same way)."""
    socket = os.path.join(test_cloud.state_dir, "run", "mysqld.sock")
    name = "imgfac_test_" + uuid.uuid4().hex[:8]
    _mariadb(socket, "CREATE DATABASE `{0}`; CREATE USER '{0}'@'localhost' "
             "IDENTIFIED BY '{1}'; GRANT ALL PRIVILEGES ON `{0}`.* TO "
             "'{0}'@'localhost';\n".format(name, PASSWORD))
    yield "mysql+pymysql://%s:%s@localhost/%s?unix_socket=%s" % (
        name, PASSWORD, name, socket)
    _mariadb(socket, "DROP DATABASE `{0}`; DROP USER '{0}'@'localhost';\n"
             .format(name))


def _as_postgres(argv, **kwargs):
    # (initdb refuses to run as root)
    return subprocess.run(["runuser", "-u", "postgres", "--"] + argv,
                          check=True, capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.fixture(scope="session")
def postgresql_cluster():
    """A PostgreSQL cluster of this session's own (Debian's postgresql
    package, installed by tools/install-deps): initdb into a temporary
    directory, listening on a socket there only; ``(psql, socket_dir)``."""
    [bindir] = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:]
    top = tempfile.mkdtemp(prefix="imgfac-pg-")
    user = pwd.getpwnam("postgres")
    os.chown(top, user.pw_uid, user.pw_gid)
    data = os.path.join(top, "data")
    _as_postgres([os.path.join(bindir, "initdb"), "-U", "postgres", "-D",
                  data])
    with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
        # psql as the postgres user; the tests' roles with their passwords
        hba.write("local all postgres peer\nlocal all all scram-sha-256\n")
    _as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-t",
                  "60", "-l", os.path.join(top, "log"), "-o",
                  "-c listen_addresses='' -k %s -p 5432 -c fsync=off" % top,
                  "start"])
    try:
        yield functools.partial(_as_postgres, [
            os.path.join(bindir, "psql"), "-h", top, "-U", "postgres", "-v",
            "ON_ERROR_STOP=1"]), top
    finally:
        _as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-m",
                      "immediate", "stop"])
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def postgresql(postgresql_cluster):
    """A database and role of this test's own in the session's cluster."""
    psql, socket_dir = postgresql_cluster
    name = "imgfac_test_" + uuid.uuid4().hex[:8]
    psql(input="CREATE ROLE %s LOGIN PASSWORD '%s';\n"
               "CREATE DATABASE %s OWNER %s;\n" % (name, PASSWORD, name, name))
    yield "postgresql+psycopg2://%s:%s@/%s?host=%s" % (
        name, PASSWORD, name, socket_dir)
    psql(input="DROP DATABASE %s WITH (FORCE);\nDROP ROLE %s;\n"
               % (name, name))


@pytest.fixture
def sqlite(tmp_path):
    """The default database: an SQLite file in the store's directory."""
    return store.default_connection(str(tmp_path / "store"))


@pytest.fixture(params=["mariadb", "postgresql"])
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def database_url(request):
    return request.getfixturevalue(request.param)


def _conf(tmp_path, url):
    path = tmp_path / "imgfac-nova.conf"
    path.write_text("[DEFAULT]\nstorage_path = %s\n[database]\n"
                    "connection = %s\n" % (tmp_path / "store", url))
    return str(path)


def test_a_server_database_needs_db_sync(server, tmp_path):
    unsynced = store.ImageStore(str(tmp_path / "store"), {
        "connection": server})
    with pytest.raises(store.StoreError) as exc:
        unsynced.list()
    assert "has no schema" in str(exc.value)
    assert "run 'imgfac-nova-manage db sync'" in str(exc.value)
    assert PASSWORD not in str(exc.value)


def test_db_sync_then_records_round_trip(database_url, tmp_path, capsys):
    conf = _conf(tmp_path, database_url)
    assert manage.main(["--config-file", conf, "db", "sync"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(": schema %s (was none)\n" % migration.HEAD)
    assert PASSWORD not in out
    assert manage.main(["--config-file", conf, "db", "version"]) == 0
    assert capsys.readouterr().out == migration.HEAD + "\n"

    s = store.ImageStore(str(tmp_path / "store"), {
        "connection": database_url})
    big = "<template>%s</template>" % ("x" * 200000)  # > TEXT's 64 KiB
    base = s.add(images.ImageRecord(
        type=images.BASE_IMAGE, template=big,
        created="2026-01-01T00:00:01+00:00", properties={"k": ["v", 1]},
        timings={"install": {"cloud": 1.5}}, trust_id="t" * 32))
    target = s.add(images.ImageRecord(
        type=images.TARGET_IMAGE, base_image_id=base.identifier,
        created="2026-01-01T00:00:00+00:00", project_id="p1"))
    assert s.get(base.identifier).to_dict() == base.to_dict()
    assert [r.identifier for r in s.list()] == [target.identifier,
                                                base.identifier]
    assert [r.identifier for r in s.list({
        "base_image_id": base.identifier, "project_id": "p1"})] == [
            target.identifier]
    assert s.list({"project_id": None}) == [s.get(base.identifier)]
    [listed] = s.list({"k": ["v", 1]}, ("percent_complete",))
    assert (listed.identifier, listed.properties, listed.template) == (
        base.identifier, {"k": ["v", 1]}, None)
    s.request_cancel(base.identifier)
    assert s.cancel_requested([base.identifier, target.identifier]) == {
        base.identifier}
    with pytest.raises(store.StoreError, match="already exists"):
        s.add(images.ImageRecord.from_dict(base.to_dict()))
    s.remove(target.identifier)
    with pytest.raises(store.NotFound):
        s.get(target.identifier)


def test_concurrent_modify_loses_nothing(database_url, tmp_path):
    s = store.ImageStore(str(tmp_path / "store"), {
        "connection": database_url})
    s.sync()
    record = s.add(images.ImageRecord(type=images.BASE_IMAGE))
    errors = []

    def bump(key):
        def increment(r):
            r.properties[key] = r.properties.get(key, 0) + 1
        try:
            for _ in range(20):
                s.modify(record.identifier, increment)
        except Exception as exc:  # a failed update fails the test below
            errors.append(repr(exc))
    threads = [threading.Thread(target=bump, args=(k,)) for k in "aabb"]
    for t in threads:
        t.start()
    poll.wait_for(lambda: not any(t.is_alive() for t in threads), 120,
                  "the updating threads")
    assert errors == []
    assert s.get(record.identifier).properties == {"a": 40, "b": 40}


def test_wrong_password_is_one_line_without_it(server, tmp_path):
    url = server.replace(PASSWORD, "not-" + PASSWORD)
    database = api.Database(url, max_retries=0)
    with pytest.raises(errors.DatabaseError) as exc:
        migration.current(database)
    message = str(exc.value)
    assert message.startswith("cannot connect to the database %s: "
                              % errors.redact(url))
    assert PASSWORD not in message and "\n" not in message


def test_build_flows_are_kept_in_the_same_database(database_url, tmp_path,
                                                   fakes):  # noqa: F811
    """db sync makes TaskFlow's tables too (on a server, its alembic
    history beside ours), and a build's flow keeps its tasks' results
    there."""
    from novaimagebuilder.installer import media
    from novaimagebuilder import runner
    from tests.unit import test_pipeline

    assert manage.main(["--config-file", _conf(tmp_path, database_url), "db",
                        "sync"]) == 0
    engine = sa.create_engine(database_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"images", migration.VERSION_TABLE, "logbooks", "flowdetails",
            "atomdetails"} <= tables
    # (on SQLite TaskFlow makes its tables without its migrations)
    assert ("alembic_version" in tables) != database_url.startswith("sqlite")
    s = store.ImageStore(str(tmp_path / "store"), {
        "connection": database_url})
    build_id = "4f5e6d7c-8b9a-4c1d-9e2f-3a4b5c6d7e8f"
    runner.Pipeline(test_pipeline.Recorder(), media.MediaCache(str(fakes)),
                    build_id=build_id, persistence=s.flow_persistence()).run(
        test_pipeline.TEMPLATE, {"install_script": "disk /dev/vda\n"})
    with contextlib.closing(store.ImageStore(
            str(tmp_path / "store"), {"connection": database_url})
            .flow_persistence().get_connection()) as conn:
        book = conn.get_logbook(build_id)
        results = {atom.name: atom.results for flow in book for atom in flow}
    assert results["capture-image"] == "image"


def _previous_revision():
    from alembic import script
    scripts = script.ScriptDirectory.from_config(migration._config())
    return scripts.get_revision(migration.HEAD).down_revision


def _insert_as_of_then(database, data):
    """Insert the record ``data`` into the images table as the database's
    schema has it now (an older one: without the newer columns)."""
    with database.connection() as conn:
        table = sa.Table("images", sa.MetaData(), autoload_with=conn)
        row = {key: json.dumps(value) if isinstance(value, dict) else value
               for key, value in records.values(data).items()
               if key in table.c}
        conn.execute(sa.insert(table).values(**row))
        return set(table.c.keys())


def test_db_sync_upgrades_from_the_previous_migration(database_url, tmp_path,
                                                      capsys):
    """A database at the previous release's schema, with its records, is
    upgraded by db sync without losing a field; the schema it ends at is
    the models' (on this backend: its types, defaults and indexes)."""
    from alembic import autogenerate
    from alembic import command
    from alembic.runtime import migration as alembic_migration

    previous = _previous_revision()
    os.makedirs(tmp_path / "store")  # (where the SQLite file goes)
    database = api.Database(database_url)
    with database.connection() as conn:
        command.upgrade(migration._config(conn), previous)
    assert migration.current(database) == previous
    old = dict(test_meta_import.OLD_RECORDS[test_meta_import.TARGET_ID])
    # (the previous migration may have added a column, or another table)
    old_columns = _insert_as_of_then(database, old)
    assert old_columns <= set(models.images.c.keys())

    assert manage.main(["--config-file", _conf(tmp_path, database_url), "db",
                        "sync"]) == 0
    assert capsys.readouterr().out.endswith(": schema %s (was %s)\n" % (
        migration.HEAD, previous))
    s = store.ImageStore(str(tmp_path / "store"), {
        "connection": database_url})
    assert s.get(old["identifier"]).to_dict() == \
        images.ImageRecord.from_dict(old).to_dict()
    with database.reader() as session:
        extra = session.execute(sa.select(models.images.c.extra)).scalar()
    assert extra == {"colour": {"future": ["field"]}}
    with database.connection() as conn:
        context = alembic_migration.MigrationContext.configure(conn, opts={
            "version_table": migration.VERSION_TABLE,
            # (TaskFlow's tables, made by db sync too, are not ours)
            "include_name": lambda name, kind, parents: kind != "table" or
            name in models.metadata.tables})
        assert autogenerate.compare_metadata(context, models.metadata) == []


def test_db_sync_imports_an_older_releases_meta_files(database_url,
                                                      tmp_path, capsys):
    path = str(tmp_path / "store")
    test_meta_import._old_store(path)
    assert manage.main(["--config-file", _conf(tmp_path, database_url), "db",
                        "sync"]) == 0
    s = store.ImageStore(path, {"connection": database_url})
    found = s.list()
    assert [r.identifier for r in found] == [test_meta_import.BASE_ID,
                                             test_meta_import.TARGET_ID]
    for record in found:
        assert record.to_dict() == images.ImageRecord.from_dict(
            test_meta_import.OLD_RECORDS[record.identifier]).to_dict()
    with s._db().reader() as session:
        extras = dict(session.execute(sa.select(
            models.images.c.identifier, models.images.c.extra)).all())
    assert extras == {test_meta_import.BASE_ID: {},
                      test_meta_import.TARGET_ID: {
                          "colour": {"future": ["field"]}}}
    assert sorted(os.listdir(os.path.join(path, "imported-meta"))) == sorted(
        identifier + ".meta" for identifier in test_meta_import.OLD_RECORDS)


def test_the_cli_builds_lists_and_deletes_through_the_database(
        database_url, tmp_path, cli_env):  # noqa: F811
    """The imgfac-nova command, as a user runs it, with the test plugins:
    base and target images recorded, listed, queried and deleted."""
    from tests.unit import test_cli
    conf = _conf(tmp_path, database_url)
    assert manage.main(["--config-file", conf, "db", "sync"]) == 0
    template = tmp_path / "good.tdl"
    template.write_text(test_cli.GOOD)

    def run(*args):
        result = subprocess.run(
            [sys.executable, "-m", "imgfac_nova.cli", "--config-file", conf,
             *args], env=cli_env, capture_output=True, text=True,
            timeout=120)
        assert PASSWORD not in result.stdout + result.stderr
        return result
    base = run("--output", "json", "base_image", str(template))
    assert base.returncode == 0, base.stderr
    base_id = json.loads(base.stdout)["identifier"]
    target = run("--output", "json", "target_image", "--id", base_id,
                 "filecopy")
    assert target.returncode == 0, target.stderr
    target_id = json.loads(target.stdout)["identifier"]
    listed = run("images").stdout.splitlines()
    assert [line.split()[:3] for line in listed] == [
        [base_id, "BaseImage", "COMPLETE"],
        [target_id, "TargetImage", "COMPLETE"]]
    found = json.loads(run("--output", "json", "images", json.dumps(
        {"base_image_id": base_id})).stdout)
    assert [(r["identifier"], r["target"]) for r in found] == [
        (target_id, "filecopy")]
    assert run("delete", base_id).returncode == 0
    assert [line.split()[0] for line in run("images").stdout.splitlines()] \
        == [target_id]


def test_the_rest_daemon_builds_lists_and_deletes_through_the_database(
        database_url, tmp_path, plugin_site):  # noqa: F811
    """The REST application (noauth, the test plugins) on the database:
    a build's progress and result, the list, a cancel and a delete."""
    from imgfac_nova.api import deploy
    from tests.unit import test_api
    conf_path = _conf(tmp_path, database_url)
    assert manage.main(["--config-file", conf_path, "db", "sync"]) == 0
    conf = test_api._conf(conf_path)
    service = deploy.service(conf)
    client = test_api.Client(deploy.deploy(conf, service), service)
    try:
        done = client.wait(test_api._path(client.base(size=100)))
        assert done["percent_complete"] == 100 and "tiny" in done["icicle"]
        slow = client.base(steps=50, step_seconds=1)
        assert client.request("DELETE", test_api._path(slow)).status_int \
            == 204
        listed = client.get("/imagefactory/base_images").json["base_images"]
        assert [entry["base_image"]["id"] for entry in listed] == [
            done["id"]]
        assert client.request("DELETE", test_api._path(done)).status_int \
            == 204
        assert client.get("/imagefactory/base_images").json == {
            "base_images": []}
    finally:
        service.shutdown(callback_timeout=5)

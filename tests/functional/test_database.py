"""The image store on real database servers: MariaDB (the test cloud's, a
database and user of this test's own) and PostgreSQL (Debian's package, a
private cluster this module starts on a socket of its own)."""
import functools
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid

import pytest

from imgfac_nova import images
from imgfac_nova import manage
from imgfac_nova import store
from imgfac_nova.db import api
from imgfac_nova.db import migration
from tests import poll
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


@pytest.fixture(params=["mariadb", "postgresql"])
def server(request):
    return request.getfixturevalue(request.param)


def _conf(tmp_path, url):
    path = tmp_path / "imgfac-nova.conf"
    path.write_text("[DEFAULT]\nstorage_path = %s\n[database]\n"
                    "connection = %s\n" % (tmp_path / "store", url))
    return str(path)


def test_store_needs_db_sync_then_works(server, tmp_path, capsys):
    conf = _conf(tmp_path, server)
    unsynced = store.ImageStore(str(tmp_path / "store"), {
        "connection": server})
    with pytest.raises(store.StoreError) as exc:
        unsynced.list()
    assert "has no schema" in str(exc.value)
    assert "run 'imgfac-nova-manage db sync'" in str(exc.value)
    assert PASSWORD not in str(exc.value)

    assert manage.main(["--config-file", conf, "db", "sync"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(": schema %s (was none)\n" % migration.HEAD)
    assert PASSWORD not in out
    assert manage.main(["--config-file", conf, "db", "version"]) == 0
    assert capsys.readouterr().out == migration.HEAD + "\n"

    s = store.ImageStore(str(tmp_path / "store"), {"connection": server})
    big = "<template>%s</template>" % ("x" * 200000)  # > TEXT's 64 KiB
    base = s.add(images.ImageRecord(
        type=images.BASE_IMAGE, template=big, created="2026-01-01T00:00:01+00:00",
        properties={"k": ["v", 1]}, timings={"install": {"cloud": 1.5}}))
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
    with pytest.raises(store.StoreError, match="already exists"):
        s.add(images.ImageRecord.from_dict(base.to_dict()))
    s.remove(target.identifier)
    with pytest.raises(store.NotFound):
        s.get(target.identifier)


def test_concurrent_modify_loses_nothing(server, tmp_path):
    s = store.ImageStore(str(tmp_path / "store"), {"connection": server})
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
    with pytest.raises(api.DatabaseError) as exc:
        migration.current(database)
    message = str(exc.value)
    assert message.startswith("cannot connect to the database %s: "
                              % api.redact(url))
    assert PASSWORD not in message and "\n" not in message


def test_build_flows_are_kept_in_the_same_database(server, tmp_path,
                                                   fakes):  # noqa: F811
    """db sync makes TaskFlow's tables too (its alembic history beside
    ours), and a build's flow keeps its tasks' results there."""
    import contextlib

    import sqlalchemy as sa

    from novaimagebuilder import media
    from novaimagebuilder import runner
    from tests.unit import test_pipeline

    assert manage.main(["--config-file", _conf(tmp_path, server), "db",
                        "sync"]) == 0
    tables = set(sa.inspect(sa.create_engine(server)).get_table_names())
    assert {"images", migration.VERSION_TABLE, "alembic_version",
            "logbooks", "flowdetails", "atomdetails"} <= tables
    s = store.ImageStore(str(tmp_path / "store"), {"connection": server})
    build_id = "4f5e6d7c-8b9a-4c1d-9e2f-3a4b5c6d7e8f"
    runner.Pipeline(test_pipeline.Recorder(), media.MediaCache(str(fakes)),
                    build_id=build_id, persistence=s.flow_persistence()).run(
        test_pipeline.TEMPLATE, {"install_script": "disk /dev/vda\n"})
    with contextlib.closing(store.ImageStore(
            str(tmp_path / "store"), {"connection": server})
            .flow_persistence().get_connection()) as conn:
        book = conn.get_logbook(build_id)
        results = {atom.name: atom.results for flow in book for atom in flow}
    assert results["capture-image"] == "image"

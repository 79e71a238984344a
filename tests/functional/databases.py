"""Where the functional tests keep image records and build flows.

By default each store's own SQLite file, as the product does (and CI
runs). With ``IMGFAC_TEST_DATABASE=mariadb`` (``tox -e
functional-mariadb``), each store gets a database of its own in the test
cloud's MariaDB, made on first use and dropped at the end of the session,
and the configuration files the tests write name it. A session syncs one
schema with ``ImageStore.sync`` and copies it into each store's database
(a sync, TaskFlow's migrations included, takes seconds on a server); the
databases are named for the process that made them, so a session drops
those of sessions that died before dropping theirs.
"""
import os
import subprocess
import tempfile
import uuid

#: The environment variable choosing the records' backend.
VARIABLE = "IMGFAC_TEST_DATABASE"
BACKENDS = ("sqlite", "mariadb")
PASSWORD = "ft-db-" + uuid.uuid4().hex[:8]
#: Names of this session's databases (and their users): the prefix, then
#: the process that made them.
PREFIX = "imgfac_ft_"

#: The test cloud's MariaDB socket (set by conftest once it is up).
socket = None
_made = {}  # store directory -> (database name, connection URL)
_schema = []  # [the synced schema as SQL (mariadb-dump), its database]


def backend():
    """The backend the tests use: one of :data:`BACKENDS`."""
    return os.environ.get(VARIABLE) or "sqlite"


def _client(program, *args, statements=""):
    return subprocess.run(
        [program, "--no-defaults", "--socket=%s" % socket, "-u", "root",
         *args], input=statements, text=True, check=True,
        capture_output=True, timeout=60).stdout


def _sql(statements):
    return _client("mariadb", "--batch", "--skip-column-names",
                   statements=statements)


def _create(name):
    """A database ``name`` and its user; returns its connection URL."""
    _sql("CREATE DATABASE `{0}`; CREATE USER '{0}'@'localhost' "
         "IDENTIFIED BY '{1}'; GRANT ALL PRIVILEGES ON `{0}`.* TO "
         "'{0}'@'localhost';\n".format(name, PASSWORD))
    return "mysql+pymysql://%s:%s@localhost/%s?unix_socket=%s" % (
        name, PASSWORD, name, socket)


def _synced_schema():
    """The SQL making the schema ``ImageStore.sync`` makes (its tables,
    with the migrations' version rows), synced once a session."""
    if not _schema:
        from imgfac_nova import store as store_mod
        name = "%s%d_schema" % (PREFIX, os.getpid())
        _schema.append(None)
        _schema.append(name)
        # a server's schema is the operator's to make (db sync)
        with tempfile.TemporaryDirectory() as empty:
            store_mod.ImageStore(empty, {"connection": _create(name)}).sync()
        _schema[0] = _client("mariadb-dump", "--skip-comments",
                             "--skip-dump-date", name)
    return _schema[0]


def connection(store):
    """The ``[database] connection`` of the store in directory ``store``:
    None for its own SQLite file (the default)."""
    if backend() == "sqlite":
        return None
    store = os.path.abspath(str(store))
    if store not in _made:
        assert socket, "the test cloud's MariaDB is not known yet"
        name = "%s%d_%s" % (PREFIX, os.getpid(), uuid.uuid4().hex[:12])
        schema = _synced_schema()
        url = _create(name)
        _made[store] = (name, url)
        _sql("USE `%s`;\n%s" % (name, schema))
    return _made[store][1]


def url(store):
    """The connection URL of the records' database of ``store`` (another
    process names it so), whichever the backend."""
    from imgfac_nova import store as store_mod
    return connection(store) or "sqlite:///%s" % os.path.join(
        os.path.abspath(str(store)), store_mod.SQLITE_NAME)


def stores_under(directory):
    """The stores in or below ``directory`` that have a records' database."""
    from imgfac_nova import store as store_mod
    directory = os.path.abspath(str(directory))
    if backend() == "sqlite":
        return [top for top, _, names in os.walk(directory)
                if store_mod.SQLITE_NAME in names]
    return [store for store in _made
            if store.startswith(directory + os.sep)]


def config_section(store):
    """The configuration lines naming the records' database of ``store``
    (none for SQLite): append them after the other sections."""
    url = connection(store)
    return "" if url is None else "[database]\nconnection = %s\n" % url


def image_store(store):
    """The ImageStore of directory ``store``, on its records' database."""
    from imgfac_nova import store as store_mod
    url = connection(store)
    return store_mod.ImageStore(str(store), {"connection": url} if url
                                else None)


def _drop(names):
    if names:
        _sql("".join("DROP DATABASE IF EXISTS `{0}`; DROP USER IF EXISTS "
                     "'{0}'@'localhost';\n".format(name) for name in names))


def drop_all():
    """Drop the databases this session made."""
    names = [name for name, _ in _made.values()] + _schema[1:]
    _made.clear()
    del _schema[:]
    _drop(names)


def drop_stale():
    """Drop the databases (and users) of sessions whose process is gone."""
    names = set(_sql(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE "
        "SCHEMA_NAME LIKE '{0}%'; SELECT User FROM mysql.user WHERE User "
        "LIKE '{0}%';\n".format(PREFIX.replace("_", "\\_"))).split())
    _drop(sorted(name for name in names if not _alive(name)))


def _alive(name):
    """Whether the process named in ``name`` (PREFIX, pid, _, ...) runs."""
    pid, _, rest = name[len(PREFIX):].partition("_")
    return not (pid.isdigit() and rest) or os.path.exists("/proc/" + pid)

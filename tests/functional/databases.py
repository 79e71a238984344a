"""Where the functional tests keep image records and build flows.

By default each store's own SQLite file, as the product does (and CI
runs). With ``IMGFAC_TEST_DATABASE=mariadb`` (``tox -e
functional-mariadb``), each store gets a database of its own in the test
cloud's MariaDB, made and synced on first use and dropped at the end of
the session, and the configuration files the tests write name it.
"""
import os
import subprocess
import uuid

#: The environment variable choosing the records' backend.
VARIABLE = "IMGFAC_TEST_DATABASE"
BACKENDS = ("sqlite", "mariadb")
PASSWORD = "ft-db-" + uuid.uuid4().hex[:8]

#: The test cloud's MariaDB socket (set by conftest once it is up).
socket = None
_made = {}  # store directory -> (database name, connection URL)


def backend():
    """The backend the tests use: one of :data:`BACKENDS`."""
    return os.environ.get(VARIABLE) or "sqlite"


def _sql(statements):
    subprocess.run(["mariadb", "--no-defaults", "--socket=%s" % socket,
                    "-u", "root", "--batch"], input=statements, text=True,
                   check=True, capture_output=True, timeout=60)


def connection(store):
    """The ``[database] connection`` of the store in directory ``store``:
    None for its own SQLite file (the default)."""
    if backend() == "sqlite":
        return None
    store = os.path.abspath(str(store))
    if store not in _made:
        from imgfac_nova import store as store_mod
        assert socket, "the test cloud's MariaDB is not known yet"
        name = "imgfac_ft_" + uuid.uuid4().hex[:12]
        _sql("CREATE DATABASE `{0}`; CREATE USER '{0}'@'localhost' "
             "IDENTIFIED BY '{1}'; GRANT ALL PRIVILEGES ON `{0}`.* TO "
             "'{0}'@'localhost';\n".format(name, PASSWORD))
        url = "mysql+pymysql://%s:%s@localhost/%s?unix_socket=%s" % (
            name, PASSWORD, name, socket)
        _made[store] = (name, url)
        # a server's schema is the operator's to make (db sync)
        store_mod.ImageStore(store, {"connection": url}).sync()
    return _made[store][1]


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


def drop_all():
    """Drop the databases this session made."""
    while _made:
        _, (name, _) = _made.popitem()
        _sql("DROP DATABASE IF EXISTS `{0}`; DROP USER IF EXISTS "
             "'{0}'@'localhost';\n".format(name))

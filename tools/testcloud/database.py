"""The test cloud's own MariaDB instance and the services' schemas.

MariaDB runs from $DIR/mysql/data and listens on a unix socket only
(no TCP at all). Schema steps are remembered in $DIR/stamps/ keyed by the
installed package version, so they run once per fresh database or upgrade.
"""
import glob
import os
import shutil
import subprocess

from testcloud.install import run

DATABASES = ("keystone", "glance", "placement", "nova_api", "nova",
             "nova_cell0", "neutron", "cinder")


def mariadb_argv(layout):
    return [
        "/usr/sbin/mariadbd", "--no-defaults",
        "--datadir=%s" % layout.mysql_data,
        "--socket=%s" % layout.mysql_socket,
        "--pid-file=%s" % layout.path("run", "mariadbd-own.pid"),
        "--skip-networking", "--user=root", "--skip-name-resolve",
        "--character-set-server=utf8", "--collation-server=utf8_general_ci",
        "--max-connections=1000", "--innodb-buffer-pool-size=128M",
        "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
    ]


def initialize(layout, log):
    """Create the data directory on first use; True if it was created.

    It is made beside and renamed into place when complete, so an
    interrupted first run leaves nothing that looks like a database.
    """
    if os.path.isdir(os.path.join(layout.mysql_data, "mysql")):
        return False
    fresh = layout.mysql_data + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh)
    run(["mariadb-install-db", "--no-defaults", "--datadir=%s" % fresh,
         "--user=root", "--auth-root-authentication-method=socket",
         "--skip-test-db"], log)
    shutil.rmtree(layout.mysql_data, ignore_errors=True)
    os.rename(fresh, layout.mysql_data)
    for stamp in glob.glob(os.path.join(layout.stamps, "db-*")):
        os.unlink(stamp)
    return True


def sql(layout, statements):
    """Run SQL as the database root (socket auth); statements via stdin."""
    result = subprocess.run(
        ["mariadb", "--no-defaults", "--socket=%s" % layout.mysql_socket,
         "-u", "root", "--batch", "--skip-column-names"],
        input=statements, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError("SQL failed: %s" % result.stderr.strip())
    return result.stdout


def create_databases(layout, password):
    statements = ["CREATE USER IF NOT EXISTS 'imgfac'@'localhost';",
                  "ALTER USER 'imgfac'@'localhost' IDENTIFIED BY '%s';"
                  % password]
    for name in DATABASES:
        statements.append("CREATE DATABASE IF NOT EXISTS `%s`;" % name)
        statements.append("GRANT ALL PRIVILEGES ON `%s`.* TO "
                          "'imgfac'@'localhost';" % name)
    sql(layout, "\n".join(statements) + "\n")


def package_version(layout, dist):
    """Installed version of a distribution in the venv (from its dist-info)."""
    pattern = os.path.join(layout.site_packages(), "%s-*.dist-info" % dist)
    found = glob.glob(pattern)
    return os.path.basename(found[0])[len(dist) + 1:-10] if found else "?"


def schema_steps(layout):
    """[(name, dist, [argv, ...], env)] bringing each schema up to date."""
    bin_ = layout.venv_bin
    etc = layout.etc_file
    nova = ["--config-file", etc("nova", "nova.conf")]
    keystone = ["--config-file", etc("keystone", "keystone.conf")]
    neutron = ["--config-file", etc("neutron", "neutron.conf"),
               "--config-file", etc("neutron", "ml2_conf.ini")]
    return [
        ("keystone", "keystone", [
            [bin_("keystone-manage")] + keystone + ["db_sync"],
        ]),
        ("glance", "glance", [
            [bin_("glance-manage"), "--config-dir", layout.etc + "/glance",
             "db_sync"],
        ]),
        ("placement", "openstack_placement", [
            [bin_("placement-manage"), "--config-dir",
             layout.etc + "/placement", "db", "sync"],
        ]),
        ("nova", "nova", [
            [bin_("nova-manage")] + nova + ["api_db", "sync"],
            [bin_("nova-manage")] + nova + ["cell_v2", "map_cell0"],
            [bin_("nova-manage")] + nova + ["db", "sync"],
        ]),
        ("neutron", "neutron", [
            [bin_("neutron-db-manage")] + neutron + ["upgrade", "heads"],
        ]),
        ("cinder", "cinder", [
            [bin_("cinder-manage"), "--config-file",
             etc("cinder", "cinder.conf"), "db", "sync"],
        ]),
    ]


def sync_schemas(layout, log, say):
    for name, dist, commands in schema_steps(layout):
        stamp = os.path.join(layout.stamps, "db-" + name)
        version = package_version(layout, dist)
        try:
            with open(stamp) as f:
                if f.read() == version:
                    continue
        except OSError:
            pass
        say("database schema: %s %s" % (name, version))
        for argv in commands:
            run(argv, log)
        if name == "nova":
            ensure_cell1(layout, log)
        with open(stamp, "w") as f:
            f.write(version)


def ensure_cell1(layout, log):
    """Create cell1 (from nova.conf's database and transport) unless it exists."""
    cells = sql(layout, "SELECT name FROM nova_api.cell_mappings;\n").split()
    if "cell1" not in cells:
        run([layout.venv_bin("nova-manage"), "--config-file",
             layout.etc_file("nova", "nova.conf"), "cell_v2", "create_cell",
             "--name", "cell1"], log)

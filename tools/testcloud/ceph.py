"""The test cloud's Ceph: one monitor, one manager, one BlueStore OSD.

Debian's packages, run the way Ceph's own vstart.sh runs a development
cluster: no keyrings (auth none: the monitor and OSD listen on 127.0.0.1
only and hold nothing but test data), pools of size 1, the OSD's block
device a sparse file under $DIR/ceph (not `<osd data>/block`, which BlueStore
makes a symlink of: ELOOP). The manager is needed as well: pool statistics,
which Cinder's RBD driver asks for, hang without one.

The monitor's store and the OSD are made once; `up` then only starts the
three daemons, waits for the OSD and creates the missing pools (seconds).
"""
import json
import os
import shutil
import subprocess
import time
import uuid

from testcloud import layout as names
from testcloud.install import run
from testcloud.process import Daemon

MON, MGR, OSD = "a", "x", 0
#: Pools and their placement groups (Cinder's volumes; one OSD).
POOLS = {"volumes": 16}
OSD_BYTES = 64 * 1024 ** 3  # sparse: only what is written takes space
#: Manager modules never loaded: all but the always-on ones (each costs
#: ~15 MiB; disabling an always-on one turns the health to HEALTH_ERR).
UNUSED_MGR_MODULES = (
    "alerts", "influx", "insights", "iostat", "localpool", "mirroring",
    "nfs", "osd_perf_query", "osd_support", "prometheus", "restful",
    "selftest", "snap_schedule", "stats", "telegraf", "test_orchestrator",
    "zabbix")


class CephError(RuntimeError):
    """A Ceph command failed or the cluster did not come up."""


def conf_path(layout):
    return layout.etc_file("ceph", "ceph.conf")


def _data(layout, *parts):
    return layout.path("ceph", *parts)


def _osd_dir(layout):
    return _data(layout, "osd", "ceph-%d" % OSD)


def _identity(layout, name):
    """A UUID kept in $DIR/ceph/NAME (the cluster's fsid, the OSD's)."""
    path = _data(layout, name)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(value + "\n")
        os.replace(path + ".tmp", path)
        return value


def fsid(layout):
    return _identity(layout, "fsid")


def conf_sections(layout):
    """ceph.conf as {section: {option: value}}."""
    mon = "%s:%d" % (names.HOST, names.PORTS["ceph-mon"])
    mon_v2 = "%s:%d" % (names.HOST, names.PORTS["ceph-mon-v2"])
    to_stderr = {"log_file": "", "log_to_stderr": True,
                 "err_to_stderr": True}
    return {
        "global": {
            "fsid": fsid(layout),
            "mon_host": "[v2:%s,v1:%s]" % (mon_v2, mon),
            "public_addr": names.HOST,
            "cluster_addr": names.HOST,
            "auth_cluster_required": "none",
            "auth_service_required": "none",
            "auth_client_required": "none",
            "auth_allow_insecure_global_id_reclaim": False,
            "osd_pool_default_size": 1,
            "osd_pool_default_min_size": 1,
            "mon_allow_pool_size_one": True,
            "mon_warn_on_pool_no_redundancy": False,
            "osd_crush_chooseleaf_type": 0,
            "mon_data_avail_warn": 10,
            "run_dir": layout.path("run", "ceph"),
            "admin_socket": layout.path("run", "ceph", "$name.asok"),
            "mon_cluster_log_file": layout.logfile("ceph-cluster"),
        },
        "mon": dict(to_stderr, mon_data=_data(layout, "mon", "ceph-$id")),
        "mgr": dict(to_stderr, mgr_data=_data(layout, "mgr", "ceph-$id"),
                    mgr_disabled_modules=" ".join(UNUSED_MGR_MODULES)),
        "osd": dict(
            to_stderr,
            osd_data=_data(layout, "osd", "ceph-$id"),
            osd_objectstore="bluestore",
            bluestore_block_path=_data(layout, "osd", "ceph-$id.block"),
            bluestore_block_size=OSD_BYTES,
            bluestore_block_create=True,
            bluestore_block_db_create=False,
            bluestore_block_wal_create=False,
            osd_memory_target=1024 ** 3),
    }


def daemons(layout):
    """The monitor, manager and OSD, in start order."""
    conf = conf_path(layout)

    def daemon(binary, ident, port=None):
        argv = [binary, "-f", "-c", conf, "-i", str(ident)]
        return Daemon(layout, binary, argv, " ".join(argv), port=port,
                      configs=(conf,))

    return [daemon("ceph-mon", MON, names.PORTS["ceph-mon"]),
            daemon("ceph-mgr", MGR), daemon("ceph-osd", OSD)]


def ceph(layout, *args, timeout=30, binary="ceph"):
    """Run the `ceph` (or `rbd`) CLI against the cluster; its stdout."""
    argv = [binary, "-c", conf_path(layout)] + list(args)
    if binary == "ceph":
        argv += ["--connect-timeout", str(timeout)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=timeout + 10,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CephError("%s %s: no answer in %d s"
                        % (binary, " ".join(args), timeout)) from None
    if result.returncode:
        raise CephError("%s %s failed: %s" % (
            binary, " ".join(args),
            "".join(result.stderr.strip().splitlines()[-1:])))
    return result.stdout


def make_monitor(layout, log):
    """The monitor's store (once): made beside and renamed into place."""
    store = _data(layout, "mon", "ceph-%s" % MON)
    if os.path.isdir(os.path.join(store, "store.db")):
        return False
    os.makedirs(layout.path("run", "ceph"), exist_ok=True)
    fresh = store + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh)
    monmap = _data(layout, "monmap")
    run(["monmaptool", "--clobber", "--create", "--fsid", fsid(layout),
         "--addv", MON, conf_sections(layout)["global"]["mon_host"],
         monmap], log)
    run(["ceph-mon", "-c", conf_path(layout), "--mkfs", "-i", MON,
         "--monmap", monmap, "--mon-data", fresh], log)
    os.rename(fresh, store)
    os.unlink(monmap)
    return True


def make_osd(layout, log):
    """Register the OSD with the monitor and make its BlueStore (once).

    `osd new` is idempotent for one OSD UUID; an interrupted mkfs (no
    mkfs_done) is started over on a new block file."""
    data = _osd_dir(layout)
    if os.path.exists(os.path.join(data, "mkfs_done")):
        return False
    osd_uuid = _identity(layout, "osd-uuid")
    ident = ceph(layout, "osd", "new", osd_uuid).strip()
    if ident != str(OSD):
        raise CephError("the monitor gave the OSD id %s, not %d"
                        % (ident, OSD))
    shutil.rmtree(data, ignore_errors=True)
    block = data + ".block"
    if os.path.exists(block):
        os.unlink(block)
    os.makedirs(data)
    run(["ceph-osd", "-c", conf_path(layout), "--mkfs", "-i", str(OSD),
         "--osd-uuid", osd_uuid], log)
    return True


def wait_osd_up(layout, osd_daemon, timeout=90):
    """Wait until the monitor counts the OSD up."""
    deadline = time.monotonic() + timeout
    while True:
        stat = json.loads(ceph(layout, "osd", "stat", "-f", "json"))
        if stat.get("num_up_osds", 0) >= 1:
            return
        if not osd_daemon.pid():
            raise CephError("ceph-osd exited; end of %s:\n%s"
                            % (osd_daemon.logfile, osd_daemon.log_tail()))
        if time.monotonic() > deadline:
            raise CephError("the OSD is not up after %d s; end of %s:\n%s"
                            % (timeout, osd_daemon.logfile,
                               osd_daemon.log_tail()))
        time.sleep(0.3)


def ensure_pools(layout, say):
    have = set(ceph(layout, "osd", "pool", "ls").split())
    for pool, pgs in POOLS.items():
        if pool in have:
            continue
        ceph(layout, "osd", "pool", "create", pool, str(pgs))
        # (waits until the pool's placement groups take writes)
        ceph(layout, "pool", "init", pool, binary="rbd", timeout=120)
        say("created Ceph pool %s" % pool)

"""The sweep: removal order, carrying on past refusals, and what is kept."""
import dataclasses
import datetime
import os
import socket
import subprocess
import sys
import types

import pytest

from imgfac_nova import build
from imgfac_nova import cleanup
from imgfac_nova import guard
from imgfac_nova import images
from imgfac_nova import store
from novaimagebuilder import sweep


class Cloud:
    """Resources with dependencies, as a cloud enforces them: a group cannot
    go while a port holds it, a port goes with its server (asynchronously)."""

    def __init__(self):
        self.present = {"server": {"s1"}, "port": {"p1"}, "group": {"g1"},
                        "image": {"i1"}}
        self.log = []

    def start(self, leftover):
        self.log.append(("start", leftover.id))
        if leftover.kind == "group" and self.present["port"]:
            raise RuntimeError("in use (HTTP 409)")
        if leftover.kind == "image" and leftover.id == "i-protected":
            raise RuntimeError("image is protected (HTTP 403)")
        self.present[leftover.kind].discard(leftover.id)

    def server_gone(self, leftover):
        self.log.append(("gone", leftover.id))
        self.present["port"].clear()

    def kinds(self):
        return [sweep.Kind("server", self.start, self.server_gone),
                sweep.Kind("port", self.start), sweep.Kind("group", self.start),
                sweep.Kind("image", self.start)]


def _found():
    # Listed in an order that would fail: the group before the server.
    return [sweep.Leftover("b", "group", "g1", "g1"),
            sweep.Leftover("b", "image", "i-protected", "keep-me"),
            sweep.Leftover("b", "image", "i1", "jeos"),
            sweep.Leftover("b", "server", "s1", "installer")]


def test_remove_goes_in_dependency_order_and_carries_on():
    cloud = Cloud()
    outcomes = sweep.remove(_found(), cloud.kinds(), lambda leftover: None)
    assert cloud.log == [("start", "s1"), ("gone", "s1"), ("start", "g1"),
                         ("start", "i-protected"), ("start", "i1")]
    assert [(o.leftover.id, o.error) for o in outcomes] == [
        ("s1", None), ("g1", None),
        ("i-protected", "image is protected (HTTP 403)"), ("i1", None)]
    assert cloud.present == {"server": set(), "port": set(), "group": set(),
                             "image": set()}


def test_dry_run_lists_the_same_order_and_touches_nothing():
    cloud = Cloud()
    outcomes = sweep.remove(_found(), cloud.kinds(), lambda leftover: None,
                            dry_run=True)
    assert [o.leftover.id for o in outcomes] == ["s1", "g1", "i-protected",
                                                 "i1"]
    assert cloud.log == []


def test_protected_leftovers_are_left_alone():
    cloud = Cloud()
    outcomes = sweep.remove(
        _found(), cloud.kinds(),
        lambda leftover: "kept" if leftover.kind == "image" else None)
    assert [o.leftover.id for o in outcomes] == ["s1", "g1"]
    assert cloud.present["image"] == {"i1"}


def test_a_builds_owner_is_known_from_any_of_its_leftovers():
    found = sweep.with_owners([
        sweep.Leftover("b", "server", "s", "s", owner="h:1"),
        sweep.Leftover("b", "keypair", "k", "k"),
        sweep.Leftover("c", "keypair", "k2", "k2")])
    assert [leftover.owner for leftover in found] == ["h:1", "h:1", None]


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def image_store(plugin_site, tmp_path):
    # plugin_site first: plugin lookups are cached by path.
    return store.ImageStore(str(tmp_path / "store"))


def _add(image_store, status, pid, activity="Waiting for SSH on 10.0.0.5:22",
         type=images.BASE_IMAGE, **fields):
    record = images.ImageRecord(
        type=type, status=status, percent_complete=60,
        worker="%s:%d" % (socket.gethostname(), pid),
        status_detail={"activity": activity, "error": None}, **fields)
    return image_store.add(record)


def _guard(image_store, dry_run=False):
    builder = build.Builder(None, image_store)
    return guard.Guard(image_store, builder.still_running,
                       None if dry_run else builder.ended)


def test_guard_keeps_running_builds_and_fails_dead_ones(image_store):
    running = _add(image_store, images.BUILDING, os.getpid())
    dead = _add(image_store, images.BUILDING, _dead_pid())
    keep = _guard(image_store)
    assert keep.protects(sweep.Leftover(running.identifier, "server", "s",
                                        "s"))
    assert keep.protects(sweep.Leftover(dead.identifier, "server", "s",
                                        "s")) is None
    failed = image_store.get(dead.identifier)
    assert failed.status == images.FAILED
    assert failed.error == ("the build process ended unexpectedly at 60 %: "
                            "Waiting for SSH on 10.0.0.5:22")
    assert image_store.get(running.identifier).status == images.BUILDING


def test_guard_keeps_results_and_jeos_cache(image_store):
    done = _add(image_store, images.COMPLETE, _dead_pid(), properties={
        images.GLANCE_ID_PROPERTY: "glance-result"})
    dead = _add(image_store, images.BUILDING, _dead_pid())
    keep = _guard(image_store)
    assert keep.protects(sweep.Leftover(done.identifier, "image",
                                        "glance-result", "r",
                                        role=sweep.RESULT))
    # A dead build's half-made result goes; a result no record explains stays.
    assert keep.protects(sweep.Leftover(dead.identifier, "image", "x", "r",
                                        role=sweep.RESULT)) is None
    assert keep.protects(sweep.Leftover(
        "00000000-0000-0000-0000-000000000000", "image", "y", "r",
        role=sweep.RESULT))
    assert keep.protects(sweep.Leftover(dead.identifier, "image", "z", "j",
                                        role=sweep.JEOS_CACHE))
    # Temporary resources of a build this store does not know go.
    assert keep.protects(sweep.Leftover(
        "00000000-0000-0000-0000-000000000000", "keypair", "k", "k")) is None


def test_guard_keeps_a_build_started_after_the_sweep(image_store):
    keep = _guard(image_store)
    late = _add(image_store, images.PENDING, os.getpid())
    assert keep.protects(sweep.Leftover(late.identifier, "server", "s", "s"))


def test_guard_keeps_what_a_live_process_owns(image_store):
    keep = _guard(image_store)

    def owned(pid, host=socket.gethostname(), build="b"):
        return sweep.Leftover(build, "work directory", "/w", "/w",
                              owner="%s:%d" % (host, pid))
    assert keep.protects(owned(os.getpid()))
    assert keep.protects(owned(_dead_pid())) is None
    # Another host's process cannot be checked: kept unless the store knows
    # the build is over.
    assert keep.protects(owned(1, host="elsewhere"))
    failed = _add(image_store, images.FAILED, 1)
    assert keep.protects(owned(1, "elsewhere", failed.identifier)) is None


def test_sweep_removes_partial_data_of_failed_builds(plugin_site, image_store,
                                                     monkeypatch):
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    dead = _add(image_store, images.FAILED, _dead_pid())
    alive = _add(image_store, images.FAILED, os.getpid())
    done = _add(image_store, images.COMPLETE, _dead_pid())
    for record in (dead, alive, done):
        with open(image_store.body_path(record.identifier), "wb") as handle:
            handle.write(b"half")
    conf = types.SimpleNamespace(storage_path=image_store.path,
                                 media_cache_path=image_store.path)
    builder = build.Builder(conf, image_store)
    found = [(where, str(o.leftover), o.error)
             for where, o in cleanup.sweep(builder, {}, dry_run=True)]
    body = image_store.body_path(dead.identifier)
    assert found == [("store", "partial image data %s of build %s"
                      % (body, dead.identifier), None)]
    assert os.path.exists(body)
    cleanup.sweep(builder, {})
    assert not os.path.exists(body)
    assert os.path.exists(image_store.body_path(alive.identifier))
    assert os.path.exists(image_store.body_path(done.identifier))


def test_a_dry_run_changes_nothing_and_lists_what_the_sweep_removes(
        plugin_site, image_store, monkeypatch):
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    # A conversion killed half-way: the record still says BUILDING.
    dead = _add(image_store, images.BUILDING, _dead_pid(),
                activity="Converting to qcow2")
    body = image_store.body_path(dead.identifier)
    with open(body, "wb") as handle:
        handle.write(b"half")
    before = image_store.get(dead.identifier)
    builder = build.Builder(types.SimpleNamespace(
        storage_path=image_store.path, media_cache_path=image_store.path),
        image_store)
    planned = [(where, str(o.leftover), o.error)
               for where, o in cleanup.sweep(builder, {}, dry_run=True)]
    assert planned == [("store", "partial image data %s of build %s"
                        % (body, dead.identifier), None)]
    assert image_store.get(dead.identifier) == before
    assert os.path.exists(body)
    done = [(where, str(o.leftover), o.error)
            for where, o in cleanup.sweep(builder, {})]
    assert done == planned
    failed = image_store.get(dead.identifier)
    assert (failed.status, failed.error) == (
        images.FAILED, "the build process ended unexpectedly at 60 %: "
        "Converting to qcow2")
    assert not os.path.exists(body)


def test_a_resource_two_plugins_find_is_listed_once(image_store):
    """A killed push to the build's own cloud: its Glance image is the Nova
    plugin's tagged image and the provider plugin's pushed one."""
    from novaimagebuilder import sweep

    def plugin(kind):
        class Plugin:
            parameters = []

            def __init__(self, conf):
                pass

            def sweep(self, protected, parameters, dry_run=False):
                return [sweep.Outcome(sweep.Leftover("b1", kind, "img-1",
                                                     "pushed"))]
        return Plugin

    builder = build.Builder(types.SimpleNamespace(
        storage_path=image_store.path, media_cache_path=image_store.path),
        image_store)
    builder.plugins = types.SimpleNamespace(
        os_plugins={"nova": plugin("image")},
        cloud_plugins={"openstack": plugin("provider image")})
    assert [(where, o.leftover.kind) for where, o in cleanup.sweep(
        builder, {}, dry_run=True)] == [("nova", "image")]


def test_a_dry_run_guard_counts_dead_builds_failed_without_marking(
        image_store):
    dead = _add(image_store, images.BUILDING, _dead_pid())
    keep = _guard(image_store, dry_run=True)
    assert keep.protects(sweep.Leftover(dead.identifier, "image", "x", "r",
                                        role=sweep.RESULT)) is None
    assert [r.identifier for r in keep.failed()] == [dead.identifier]
    assert image_store.get(dead.identifier).status == images.BUILDING


def test_sweep_removes_a_killed_conversion_and_stale_files(
        plugin_site, image_store, tmp_path, monkeypatch):
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "media"
    conf = types.SimpleNamespace(storage_path=image_store.path,
                                 media_cache_path=str(cache))
    dead = _add(image_store, images.BUILDING, _dead_pid(),
                activity="Converting to qcow2")
    body = image_store.body_path(dead.identifier)
    partial = body + ".part"
    for path in (body, partial):
        open(path, "w").close()
    sysprep = body + ".sysprep"  # libguestfs' temporary files
    os.makedirs(os.path.join(sysprep, "libguestfsXyZ"))
    # qemu-img convert, still writing after its build process was killed.
    convert = subprocess.Popen(
        ["qemu-img", "-c", "import time; time.sleep(3600)", "convert", body,
         partial], executable=sys.executable, start_new_session=True)
    stale = os.path.join(image_store.path, ".tmp-k2j3h4g5.meta")
    open(stale, "w").close()
    os.makedirs(cache)
    host = socket.gethostname()
    downloads = {pid: str(cache / (".download-%s:%d-abcd1234" % (host, pid)))
                 for pid in (_dead_pid(), os.getpid())}
    for path in downloads.values():
        open(path, "w").close()
    try:
        builder = build.Builder(conf, image_store)
        planned = [(where, o.leftover.kind, o.leftover.id)
                   for where, o in cleanup.sweep(builder, {}, dry_run=True)]
        dead_download = next(p for pid, p in downloads.items()
                             if pid != os.getpid())
        assert planned == [
            ("store", "process", str(convert.pid)),
            ("store", "partial image data", body),
            ("store", "partial image data", partial),
            ("store", "partial image data", sysprep),
            ("store", "partial record", stale),
            ("store", "partial download", dead_download)]
        assert convert.poll() is None
        outcomes = cleanup.sweep(builder, {})
        assert [(o.leftover.kind, o.error) for _, o in outcomes] == [
            (kind, None) for _, kind, _ in planned]
        assert convert.wait(10) == -9
        assert not any(os.path.exists(p)
                       for p in (body, partial, sysprep, stale,
                                 dead_download))
        assert os.path.exists(downloads[os.getpid()])  # its writer is alive
    finally:
        convert.kill()
        convert.wait()


def test_a_killed_push_to_a_defined_provider_is_reported(image_store):
    from imgfac_nova.plugins import formats
    definition = '{"glance-host": "glance.invalid"}'
    killed = _add(image_store, images.BUILDING, _dead_pid(),
                  activity="Uploading to glance.invalid: 3 of 300 MiB",
                  type=images.PROVIDER_IMAGE, target="qcow2",
                  provider=definition)
    failed = _add(image_store, images.FAILED, _dead_pid(),
                  type=images.PROVIDER_IMAGE, target="qcow2",
                  provider=definition)
    image_store.update(failed.identifier, status_detail={
        "activity": "Uploading", "error": "Glance refused (HTTP 403)"})
    outcomes = formats.DiskFormats(None).sweep(_guard(image_store), {})
    # Its credentials are not stored: what it left cannot be listed; the
    # push that failed by itself removed its image on the way.
    assert [(o.leftover.build, o.error) for o in outcomes] == [(
        killed.identifier, "its credentials are not stored: remove them with "
        "'imgfac-nova delete %s --credentials FILE'" % killed.identifier)]


def _fake_vm(build_id, workdir):
    """A process whose command line is a build VM's (QEMU is not needed to
    find one)."""
    return subprocess.Popen(
        ["qemu-system-x86_64", "-c", "import time; time.sleep(3600)",
         "-name", "imgfac-%s-guest-2" % build_id,
         "-drive", "file=%s/guest.qcow2" % workdir],
        executable=sys.executable, start_new_session=True)


def test_local_sweep_kills_vms_and_removes_files_of_dead_builds(
        plugin_site, image_store, tmp_path, monkeypatch):
    import tempfile
    from imgfac_nova.plugins import local
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    os.makedirs(image_store.path)
    dead = _add(image_store, images.BUILDING, _dead_pid())
    live = _add(image_store, images.BUILDING, os.getpid())
    procs, dirs = {}, {}
    for record, owner in ((dead, _dead_pid()), (live, os.getpid())):
        workdir = os.path.join(image_store.path, ".work-%s-x1"
                               % record.identifier)
        os.makedirs(workdir)
        with open(os.path.join(workdir, local.OWNER_FILE), "w") as handle:
            handle.write("%s:%d\n" % (socket.gethostname(), owner))
        qmp = tempfile.mkdtemp(prefix="imgfac-qmp-%s-" % record.identifier)
        procs[record.identifier] = _fake_vm(record.identifier, workdir)
        dirs[record.identifier] = (workdir, qmp)
    try:
        plugin = local.LocalOS(types.SimpleNamespace(
            storage_path=image_store.path))
        keep = _guard(image_store)
        planned = [(o.leftover.kind, o.leftover.build)
                   for o in plugin.sweep(keep.protects, {}, dry_run=True)]
        assert planned == [("QEMU process", dead.identifier),
                           ("work directory", dead.identifier),
                           ("QMP socket directory", dead.identifier)]
        outcomes = plugin.sweep(keep.protects, {})
        assert [o.error for o in outcomes] == [None, None, None]
        assert procs[dead.identifier].wait(10) == -9
        assert not any(os.path.exists(p) for p in dirs[dead.identifier])
        assert procs[live.identifier].poll() is None
        assert all(os.path.exists(p) for p in dirs[live.identifier])
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_cloud_sweep_checks_what_it_removed_not_what_came_meanwhile(
        monkeypatch):
    from novaimagebuilder.machines import nova_sweep
    gone = sweep.Leftover("b1", "image", "img-gone", "imgfac-nova-b1")
    stuck = sweep.Leftover("b2", "image", "img-stuck", "imgfac-nova-b2")
    # Another build killed while this sweep ran: not in its first listing.
    meanwhile = sweep.Leftover("b3", "image", "img-new", "imgfac-nova-b3")
    listings = iter([[gone, stuck], [stuck, meanwhile]])
    monkeypatch.setattr(nova_sweep, "leftovers", lambda conn: next(listings))
    deleted = []
    unused = types.SimpleNamespace(delete_server=None, delete_ip=None,
                                   delete_port=None,
                                   delete_security_group=None,
                                   delete_keypair=None)
    conn = types.SimpleNamespace(
        compute=unused, network=unused, image=types.SimpleNamespace(
            delete_image=lambda image, ignore_missing: deleted.append(image)))
    outcomes = nova_sweep.sweep_cloud(conn, lambda leftover: None)
    assert deleted == ["img-gone", "img-stuck"]
    assert [(o.leftover.id, o.error) for o in outcomes] == [
        ("img-gone", None), ("img-stuck", None),
        ("img-stuck", "still there after the sweep")]


def _resuming_guard(image_store, max_age=24):
    builder = build.Builder(None, image_store)
    return guard.Guard(image_store, builder.still_running, builder.ended,
                       max_age=max_age)


def test_guard_keeps_a_build_that_may_be_resumed(image_store, monkeypatch):
    dead = _add(image_store, images.BUILDING, _dead_pid())
    with monkeypatch.context() as patch:  # last changed long ago
        patch.setattr(images, "utcnow", lambda: "2026-01-01T00:00:00+00:00")
        old = _add(image_store, images.BUILDING, _dead_pid())
    push = _add(image_store, images.BUILDING, _dead_pid(),
                type=images.PROVIDER_IMAGE)
    keep = _resuming_guard(image_store)
    reason = keep.protects(sweep.Leftover(dead.identifier, "server", "s",
                                          "s"))
    assert reason == ("build %s can be resumed ('imgfac-nova resume %s', or "
                      "'--abandon' to give it up)" % (dead.identifier,
                                                      dead.identifier))
    assert image_store.get(dead.identifier).status == images.BUILDING
    target = _add(image_store, images.BUILDING, _dead_pid(),
                  type=images.TARGET_IMAGE)
    assert "can be resumed" in keep.protects(sweep.Leftover(
        target.identifier, "server", "s", "s"))
    # Older than resume_max_age, or a push: failed and swept.
    for gone in (old, push):
        assert keep.protects(sweep.Leftover(gone.identifier, "server", "s",
                                            "s")) is None
        assert image_store.get(gone.identifier).status == images.FAILED
    # No age limit: any age.
    assert _resuming_guard(image_store, 0).protects(sweep.Leftover(
        dead.identifier, "server", "s", "s"))


def test_guard_keeps_a_recent_build_of_another_store(image_store):
    now = datetime.datetime.now(datetime.timezone.utc)
    owner = "%s:%d" % (socket.gethostname(), _dead_pid())
    young = sweep.Leftover("elsewhere", "server", "s", "s", owner=owner,
                           created=(now - datetime.timedelta(hours=2))
                           .strftime("%Y-%m-%dT%H:%M:%SZ"))
    old = dataclasses.replace(young, created=(
        now - datetime.timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    keep = _resuming_guard(image_store)
    assert "may still be resumed where it is" in keep.protects(young)
    assert keep.protects(old) is None
    assert _guard(image_store).protects(young) is None  # no resuming

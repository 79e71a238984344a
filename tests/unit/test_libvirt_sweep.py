"""The libvirt plugin's sweep, on libvirt's own test driver (in-process, no
daemon): it destroys the domains, stops the pools and removes the work
directories of this store's dead builds, and nothing of another store's or
of a build the guard keeps."""
import os
import types
import uuid

import pytest

from imgfac_nova.plugins import libvirt as plugin
from imgfac_nova.plugins import local
from novaimagebuilder.machines import libvirt_machines
from novaimagebuilder.machines import libvirt_xml

URI = "test:///default"  # one state per process, shared by its connections


def _build(conn, images, store):
    """A build of ``store`` as a killed process leaves it: its work
    directory (owner, store), its pool there, a running guest domain."""
    build = str(uuid.uuid4())
    workdir = os.path.join(images, "%s%s-x1" % (local.WORKDIR_PREFIX, build))
    os.makedirs(workdir)
    for name, text in ((local.OWNER_FILE, "elsewhere:1\n"),
                       (plugin.STORE_FILE, store + "\n")):
        with open(os.path.join(workdir, name), "w") as handle:
            handle.write(text)
    conn.storagePoolCreateXML(libvirt_xml.pool("imgfac-" + build, workdir), 0)
    conn.createXML(libvirt_xml.domain(
        "imgfac-%s-guest-2" % build, libvirt_xml.Tag(build, "guest",
                                                     "elsewhere:1", store),
        "tcg", 256, 1, os.path.join(workdir, "guest.qcow2"),
        os.path.join(workdir, "guest-2.console.log")), 0)
    return build, workdir


def _held(conn, build):
    domains = [d.name() for d in conn.listAllDomains(0)
               if d.name().startswith("imgfac-%s-" % build)]
    pools = [p.name() for p in conn.listAllStoragePools(0)
             if p.name() == "imgfac-" + build]
    return domains, pools


@pytest.fixture
def conn():
    conn = libvirt_machines.connect(URI)
    yield conn
    for domain in conn.listAllDomains(0):
        if domain.name().startswith(libvirt_machines.PREFIX):
            domain.destroy()
    for pool in conn.listAllStoragePools(0):
        if pool.name().startswith(libvirt_machines.PREFIX):
            pool.destroy()
    conn.close()


def test_sweep_removes_only_this_stores_unprotected_builds(conn, tmp_path):
    images, store = str(tmp_path / "images"), str(tmp_path / "store")
    conf = types.SimpleNamespace(libvirt_uri=URI, libvirt_images_path=images,
                                 storage_path=store)
    dead, dead_dir = _build(conn, images, store)
    kept, kept_dir = _build(conn, images, store)
    other, other_dir = _build(conn, images, str(tmp_path / "other-store"))

    def protected(leftover):
        return "build %s is running" % kept if leftover.build == kept \
            else None
    sweeper = plugin.LibvirtOS(conf)

    planned = sweeper.sweep(protected, {}, dry_run=True)
    assert [(o.leftover.build, o.leftover.kind) for o in planned] == [
        (dead, "libvirt domain"), (dead, "libvirt storage pool"),
        (dead, "work directory")]
    assert _held(conn, dead) == (["imgfac-%s-guest-2" % dead],
                                 ["imgfac-" + dead])

    outcomes = sweeper.sweep(protected, {})
    assert [(o.leftover.kind, o.error) for o in outcomes] == [
        ("libvirt domain", None), ("libvirt storage pool", None),
        ("work directory", None)]
    assert _held(conn, dead) == ([], []) and not os.path.exists(dead_dir)
    for build, workdir in ((kept, kept_dir), (other, other_dir)):
        assert _held(conn, build) == (["imgfac-%s-guest-2" % build],
                                      ["imgfac-" + build])
        assert os.path.isdir(workdir)


def test_without_libvirtd_only_work_directories_are_swept(tmp_path):
    images, store = str(tmp_path / "images"), str(tmp_path / "store")
    conf = types.SimpleNamespace(
        libvirt_uri="qemu+unix:///system?socket=%s" % (tmp_path / "none"),
        libvirt_images_path=images, storage_path=store)
    workdir = os.path.join(images, "%s%s-x1" % (local.WORKDIR_PREFIX,
                                                uuid.uuid4()))
    os.makedirs(workdir)
    with open(os.path.join(workdir, plugin.STORE_FILE), "w") as handle:
        handle.write(store + "\n")
    outcomes = plugin.LibvirtOS(conf).sweep(lambda leftover: None, {})
    assert [(o.leftover.kind, o.error) for o in outcomes] == [
        ("work directory", None)]
    assert not os.path.exists(workdir)

"""A resumed libvirt build goes on with what an earlier run left, on
libvirt's own test driver (in-process, no daemon): the build's pool is
made again over its files, the installer domain is taken over running or
powered off (its XML is in the work directory), earlier domains are
destroyed before a step boots its machine anew, and a disk an earlier run
made is replaced."""
import os
import uuid

import pytest

from novaimagebuilder import errors
from novaimagebuilder.machines import libvirt_machines
from novaimagebuilder.machines import libvirt_xml
from tests.unit.test_libvirt_sweep import conn  # noqa: F401 (fixture)


def _backend(conn, workdir, build):  # noqa: F811
    pool = libvirt_machines.create_pool(conn, build, workdir)
    return libvirt_machines.LibvirtBackend(
        conn, pool, workdir, "tcg", libvirt_xml.Tag(build, "", "me:1", "/s"),
        build_id=build)


@pytest.fixture
def earlier(conn, tmp_path):  # noqa: F811
    """A build whose process died while its installer ran: its pool, the
    installer domain (running) and its disk, and the domain's XML."""
    build = str(uuid.uuid4())
    workdir = str(tmp_path)
    backend = _backend(conn, workdir, build)
    disk = os.path.join(workdir, "install.qcow2")
    with open(disk, "w"):
        pass
    vm = backend._vm("installer", disk, ssh=True).start()
    return build, workdir, vm


def test_installer_left_running_is_taken_over(conn, earlier):  # noqa: F811
    build, workdir, left = earlier
    backend = _backend(conn, workdir, build)  # the pool is made again

    vm = backend.adopt(left.name)

    assert vm.running() and vm.name == left.name
    assert (vm.disk, vm.console_path, vm.ssh_port) == (
        left.disk, left.console_path, left.ssh_port)
    assert [p.name() for p in conn.listAllStoragePools(0)
            if build in p.name()] == ["imgfac-" + build]
    backend.power_off(vm)
    assert not vm.running()


def test_installer_that_powered_off_is_taken_over_for_its_disk(
        conn, earlier):  # noqa: F811
    build, workdir, left = earlier
    left.kill()  # a transient domain is gone once it stops
    backend = _backend(conn, workdir, build)

    vm = backend.adopt(left.name)

    assert not vm.running() and vm.disk == left.disk
    os.unlink(left.disk)
    with pytest.raises(errors.Gone):
        backend.adopt(left.name)
    with pytest.raises(errors.Gone):
        backend.adopt("imgfac-%s-installer-9" % build)


def test_a_rerun_step_destroys_the_builds_earlier_domains(
        conn, earlier, tmp_path_factory):  # noqa: F811
    build, workdir, left = earlier
    other = str(uuid.uuid4())
    other_vm = _backend(conn, str(tmp_path_factory.mktemp("other")),
                        other)._vm("guest", "/x/guest.qcow2").start()
    backend = _backend(conn, workdir, build)

    backend._stop_earlier_runs()

    assert not left.running()
    assert other_vm.running()
    other_vm.kill()


def test_a_disk_an_earlier_run_made_is_replaced(conn, tmp_path):  # noqa: F811
    build = str(uuid.uuid4())
    backend = _backend(conn, str(tmp_path), build)
    first = backend._new_disk("guest.qcow2", 1024 ** 2)
    backend = _backend(conn, str(tmp_path), build)
    assert backend._new_disk("guest.qcow2", 2 * 1024 ** 2) == first
    assert backend.pool.storageVolLookupByName("guest.qcow2").info()[1] == \
        2 * 1024 ** 2

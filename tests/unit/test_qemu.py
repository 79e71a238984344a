import os

import pytest

from novaimagebuilder import errors
from novaimagebuilder.machines import qemu


def test_tcg_when_kvm_is_kvm_pvm(monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/sys/module/kvm_pvm"
                        or real_exists(p))
    accel, why = qemu.choose_accelerator()
    assert accel == "tcg" and "kvm-pvm" in why
    with pytest.raises(errors.BuildError, match="KVM was requested but"):
        qemu.choose_accelerator("kvm")


def test_tcg_without_dev_kvm(monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert qemu.choose_accelerator() == ("tcg", "TCG because /dev/kvm is not "
                                                "available")
    assert qemu.choose_accelerator("tcg") == ("tcg", "TCG requested")


def test_qemu_that_cannot_start_is_one_line_and_leaves_nothing(tmp_path):
    vm = qemu.VM(str(tmp_path), "broken", str(tmp_path / "missing.qcow2"),
                 "tcg", ssh=True)
    with pytest.raises(errors.BuildError, match="QEMU did not start: .*"
                       "missing.qcow2") as exc:
        vm.start()
    assert "\n" not in str(exc.value)
    assert not os.path.exists(os.path.dirname(vm.qmp_path))
    assert qemu.processes_using(str(tmp_path)) == []


def test_ssh_port_is_free_loopback_port():
    port = qemu.free_port()
    assert 1024 < port < 65536


def test_a_resumed_local_build_stops_what_an_earlier_run_left(
        monkeypatch, tmp_path):
    """A machine an earlier process started cannot be taken over: adopting
    it stops it (and says so); one that is not running is gone. Either way
    the build's machines an earlier run left are stopped, and the QMP
    socket directories of its machines, running or not, removed."""
    from novaimagebuilder.machines import local
    build = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    running = {7001: ["qemu-system-x86_64", "-name",
                      "imgfac-%s-installer-1" % build, "-qmp",
                      "unix:/nonexistent/imgfac-qmp-x/qmp,server=on"],
               7002: ["qemu-system-x86_64", "-name",
                      "imgfac-11111111-2222-4333-8444-555555555555-guest-1"]}
    killed = []
    monkeypatch.setattr(qemu, "processes", lambda program="qemu-system": iter(list(
        running.items())))
    monkeypatch.setattr(qemu, "kill", killed.append)
    monkeypatch.setattr(qemu, "wait_gone", lambda pid: None)
    monkeypatch.setattr(local.tempfile, "gettempdir", lambda: str(tmp_path))
    stale = tmp_path / (qemu.QMP_PREFIX + build + "-abc")
    other = tmp_path / (qemu.QMP_PREFIX + "11111111-2222-4333-8444-x")
    stale.mkdir()
    other.mkdir()
    backend = local.LocalBackend("/nonexistent", "tcg", build_id=build)
    with pytest.raises(errors.BuildError, match="installer-1: a local "
                       "machine cannot be taken over .* .it was stopped"):
        backend.adopt("installer-1")
    assert killed == [7001]  # not another build's
    assert not stale.exists() and other.exists()
    del running[7001]
    stale.mkdir()  # a machine that ended with the dead process
    with pytest.raises(errors.Gone, match="guest-2 is not running and its "
                       "disk is gone"):
        backend.adopt("guest-2")
    assert killed == [7001] and not stale.exists() and other.exists()


def test_a_machine_that_powered_off_meanwhile_is_taken_as_it_was_left(
        monkeypatch, tmp_path):
    """Powered off while no process drove it (the installer finished, the
    guest shut down before its capture): the resumed build goes on with its
    disk, and captures it."""
    from novaimagebuilder.machines import local
    monkeypatch.setattr(qemu, "processes", lambda program="qemu-system": iter([]))
    monkeypatch.setattr(local.tempfile, "gettempdir", lambda: str(tmp_path))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "install.qcow2").write_bytes(b"installed")
    backend = local.LocalBackend(str(workdir), "tcg",
                                 build_id="0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")
    machine = backend.adopt("installer-1")
    assert not machine.running() and machine.name == "installer-1"
    assert machine.disk == str(workdir / "install.qcow2")
    backend.wait_powered_off(machine, "installing", timeout=5)
    jeos = backend.capture(machine, "jeos")
    assert open(jeos, "rb").read() == b"installed"
    backend.delete(machine)  # its QMP socket directory too
    assert [p.name for p in tmp_path.iterdir()] == ["work"]
    with pytest.raises(errors.Gone):  # its disk is the JEOS now
        backend.adopt("installer-1")

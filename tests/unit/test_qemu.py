import os

import pytest

from novaimagebuilder import errors
from novaimagebuilder import qemu


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

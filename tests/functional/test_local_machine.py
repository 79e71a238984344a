"""The machine local builds give an OS: the test guest booted on the CPU
model an Enterprise Linux 9 (x86-64-v2) or 10 (x86-64-v3) build gets sees
that level's features in /proc/cpuinfo; a UEFI build's VMs boot OVMF (with
Secure Boot enforced when asked) on the build's own NVRAM copy, and a
Secure Boot build (local QEMU or libvirt) runs and boots with it on."""
import re

import pytest

from novaimagebuilder.images import formats
from novaimagebuilder.machines import local
from novaimagebuilder.machines import machine_model
from novaimagebuilder.machines import qemu
from tests import poll
from tests.functional import builds
from tests.functional import guestcheck
from tests.functional.libvirtd import libvirtd  # noqa: F401 (fixture)


@pytest.mark.parametrize("os_name,version,level", [
    ("RHEL", "9.4", 2), ("CentOS-Stream", "10", 3)])
def test_guest_sees_the_x86_64_level_of_its_os(local_base_image, os_name,
                                               version, level):
    accel, _ = qemu.choose_accelerator()
    machine = machine_model.for_os(os_name, version, accel)
    assert machine.cpu, "an x86-64-v%d OS gets a CPU model" % level
    with guestcheck.booted(local_base_image.record["data"],
                           machine=machine) as guest:
        cpuinfo = guest.run("cat /proc/cpuinfo")[1]
    flags = set(next(line for line in cpuinfo.splitlines()
                     if line.startswith("flags")).partition(":")[2].split())
    missing = [f for f in machine_model.features(level, 0) if f not in flags]
    assert missing == [], "%s (%s) lacks %s" % (machine.cpu, accel, missing)
    print("%s %s: -cpu %s gives x86-64-v%d" % (os_name, version, machine.cpu,
                                               level))


#: The GPT partition type of an EFI system partition.
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def _uefi_vm(tmp_path, secure_boot):
    """A build's VM on the UEFI machine, with a blank disk; and its
    Machine."""
    accel, _ = qemu.choose_accelerator()
    machine = machine_model.for_os("Debian", "12", accel, "uefi", secure_boot)
    backend = local.LocalBackend(str(tmp_path), accel, machine=machine)
    disk = str(tmp_path / "blank.qcow2")
    formats.qemu_img("create", "-q", "-f", "qcow2", disk, "1G")
    return backend._vm("firmware", disk).start(), machine


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("secure_boot", [False, True])
def test_uefi_build_machine_boots_ovmf_with_its_own_nvram(tmp_path,
                                                          secure_boot):
    vm, machine = _uefi_vm(tmp_path, secure_boot)
    nvram = str(tmp_path / "uefi-vars.fd")
    template = _read(machine.firmware.vars_template)
    try:
        # OVMF's boot manager, not SeaBIOS, reaches its boot options...
        poll.wait_for(lambda: "BdsDxe:" in vm.console(), 300,
                      "OVMF's boot manager", interval=2)
        # ... and keeps them in the build's copy of the variables.
        poll.wait_for(lambda: _read(nvram) != template, 120,
                      "OVMF to write its variables", interval=2)
    finally:
        vm.kill()
    assert _read(machine.firmware.vars_template) == template


@pytest.mark.slow  # OVMF tries network boot for minutes before its shell
def test_secure_boot_machine_refuses_unsigned_code(tmp_path):
    vm, _ = _uefi_vm(tmp_path, True)
    refused = re.compile(r'failed to start Boot[0-9A-F]{4} "EFI Internal '
                         r'Shell".*Security Violation')
    try:
        # The firmware's own shell is not signed by the enrolled keys.
        poll.wait_for(lambda: refused.search(vm.console()), 900,
                      "Secure Boot to refuse the EFI shell", interval=5)
    finally:
        vm.kill()


@pytest.mark.slow  # a whole local build under OVMF: minutes of TCG
def test_uefi_local_build_boots_with_uefi(local_env, setup):
    config, store, tmp = setup
    result = builds.imgfac(config, "base_image", *builds.with_install_script(
        builds.LOCAL_PARAMS, tmp), "--parameter", "firmware", "uefi",
        builds.write_template(tmp), env=local_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    assert image["status"] == "COMPLETE"
    assert builds.store_leftovers(store) == []
    accel, _ = qemu.choose_accelerator()
    machine = machine_model.for_os("Debian", "12", accel, "uefi")
    # A fresh copy of the variables, as a cloud gives: the disk boots from
    # its removable path.
    with guestcheck.booted(image["data"], machine=machine) as guest:
        status, _ = guest.run("test -d /sys/firmware/efi", check=False)
        esp_type = guest.run("sfdisk --part-type /dev/vda 1")[1]
    assert status == 0, "the guest did not boot with UEFI"
    assert esp_type.strip().upper() == ESP_TYPE


#: Prints the value of the EFI variable that says whether Secure Boot is on
#: (its last byte; the four before it are its attributes), with efivarfs
#: mounted first (the test guest's init does not mount it).
SECURE_BOOT_STATE = (
    "mountpoint -q /sys/firmware/efi/efivars || mount -t efivarfs efivarfs "
    "/sys/firmware/efi/efivars; od -An -tu1 /sys/firmware/efi/efivars/"
    "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | awk '{print $NF}'")


@pytest.mark.slow  # a whole build under OVMF with Secure Boot: minutes of TCG
@pytest.mark.parametrize("plugin", ["local", "libvirt"])
def test_secure_boot_build_runs_and_boots_with_secure_boot_on(
        local_env, setup, plugin, request):
    if plugin == "libvirt":
        request.getfixturevalue("libvirtd")
    config, store, tmp = setup
    # The build's own guest notes what its firmware says.
    template = builds.write_template(
        tmp, command=SECURE_BOOT_STATE + " > /var/lib/imgfac-secure-boot")
    result = builds.imgfac(config, "base_image", *builds.with_install_script(
        builds.LOCAL_PARAMS, tmp), "--parameter", "os_plugin", plugin,
        "--parameter", "firmware", "uefi", "--parameter", "secure_boot",
        "true", template, env=local_env)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    assert (image["status"], image["plugin"]) == ("COMPLETE", plugin)
    accel, _ = qemu.choose_accelerator()
    machine = machine_model.for_os("Debian", "12", accel, "uefi", True)
    # A fresh copy of the variables with Microsoft's keys, as a cloud gives.
    with guestcheck.booted(image["data"], machine=machine) as guest:
        during_build = guest.run("cat /var/lib/imgfac-secure-boot")[1]
        now = guest.run(SECURE_BOOT_STATE)[1]
        state = guest.run("mokutil --sb-state")[1]
    assert during_build.strip() == "1"
    assert now.strip() == "1"
    assert "SecureBoot enabled" in state

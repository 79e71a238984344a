"""The test cloud's compute driver honours an image's firmware properties
as Nova's libvirt driver does: hw_firmware_type=uefi boots OVMF with the
server's own NVRAM, hw_machine_type picks the machine, os_secure_boot
required gets Secure Boot firmware with enrolled keys on q35 and is refused
on a machine that cannot have it; the host reports the Secure Boot trait.

Blank disk images are enough: what QEMU runs is read from its command line
and the firmware's own console output (a whole UEFI build and boot:
test_nova_build.py's slow UEFI test).
"""
import os

import pytest

from tests import poll
from tests.functional import test_cloud_servers as servers

SECURE_BOOT_TRAIT = "COMPUTE_SECURITY_UEFI_SECURE_BOOT"


def _qemu_argv(server_id):
    pids = [pid for pid in servers.qemu_pids(server_id)
            if os.readlink("/proc/%d/exe" % pid).rsplit("/", 1)[-1]
            .startswith("qemu-system")]
    assert len(pids) == 1, pids
    with open("/proc/%d/cmdline" % pids[0], "rb") as f:
        return f.read().decode().split("\0")


def _machine_and_flash(argv):
    machine = argv[argv.index("-machine") + 1]
    flash = [argv[i + 1] for i, arg in enumerate(argv)
             if arg == "-drive" and argv[i + 1].startswith("if=pflash")]
    return machine, flash


def _boot(conn, cleanup, name, **properties):
    image = servers.blank_image(conn, cleanup, name, **properties)
    return servers.boot(conn, cleanup, name, image)


def test_uefi_image_boots_ovmf_with_its_own_nvram(conn, cleanup, unique_name,
                                                  test_cloud):
    server = _boot(conn, cleanup, unique_name, hw_firmware_type="uefi",
                   hw_machine_type="q35")
    machine, flash = _machine_and_flash(_qemu_argv(server.id))
    assert machine == "q35"
    assert "readonly=on" in flash[0] and "/OVMF_CODE" in flash[0]
    assert ".secboot." not in flash[0] and ".ms." not in flash[0]
    nvram = os.path.join(servers.instances_path(test_cloud), server.id,
                         "nvram.fd")
    assert flash[1].endswith("file=" + nvram) and os.path.getsize(nvram)
    # OVMF itself runs: its boot manager reports on the serial console.
    poll.wait_for(lambda: "BdsDxe" in servers.console(conn, server), 300,
                  "OVMF's boot manager on the console")


def test_bios_image_keeps_seabios_on_pc(conn, cleanup, unique_name):
    server = _boot(conn, cleanup, unique_name)
    assert _machine_and_flash(_qemu_argv(server.id)) == ("pc", [])


def test_secure_boot_required_gets_enrolled_keys_and_smm(conn, cleanup,
                                                         unique_name):
    server = _boot(conn, cleanup, unique_name, hw_firmware_type="uefi",
                   hw_machine_type="q35", os_secure_boot="required")
    argv = _qemu_argv(server.id)
    machine, flash = _machine_and_flash(argv)
    assert machine == "q35,smm=on"
    assert "/OVMF_CODE_4M.ms.fd" in flash[0]
    assert "driver=cfi.pflash01,property=secure,value=on" in argv


@pytest.mark.parametrize("properties", [
    # libvirt: Secure Boot on x86_64 needs q35 (SecureBootNotSupported)
    {"hw_firmware_type": "uefi", "hw_machine_type": "pc",
     "os_secure_boot": "required"},
    # a machine type QEMU does not have (InvalidMachineType)
    {"hw_machine_type": "no-such-machine"},
], ids=["secure-boot-on-pc", "unknown-machine"])
def test_what_the_host_cannot_give_fails_the_boot(conn, cleanup, unique_name,
                                                  test_cloud, properties):
    image = servers.blank_image(conn, cleanup, unique_name, **properties)
    network = conn.network.find_network(servers.NETWORK,
                                        ignore_missing=False)
    server = conn.compute.create_server(
        name=unique_name, image_id=image.id, flavor_id=conn.compute.
        find_flavor(servers.FLAVOR, ignore_missing=False).id,
        networks=[{"uuid": network.id}])
    cleanup.append(lambda: conn.compute.delete_server(server))
    server = servers.wait_status(conn, server, "ERROR", 180)
    assert not servers.qemu_pids(server.id)
    assert not os.path.exists(os.path.join(
        servers.instances_path(test_cloud), server.id))


def test_host_reports_the_secure_boot_trait(admin_conn):
    providers = list(admin_conn.placement.resource_providers())
    traits = set()
    for provider in providers:
        traits.update(admin_conn.placement.get(
            "/resource_providers/%s/traits" % provider.id,
            microversion="1.6").json()["traits"])
    assert SECURE_BOOT_TRAIT in traits

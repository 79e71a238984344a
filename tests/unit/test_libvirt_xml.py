"""The libvirt plugin's domain, pool and volume XML, parsed back."""
import xml.etree.ElementTree as ET

from novaimagebuilder.machines import libvirt_xml
from novaimagebuilder.machines import machine_model

QEMU = "{%s}" % libvirt_xml.QEMU_NAMESPACE
TAG = libvirt_xml.Tag("0b5c6a8e-1d2f-4a3b-8c4d-5e6f7a8b9c0d", "installer",
                      "builder:4242", "/srv/store")
SB_FIRMWARE = machine_model.Firmware("/ovmf/code.fd", "/ovmf/vars.fd",
                                     secure_boot=True, smm=True)


def _domain(**kwargs):
    arguments = dict(name="imgfac-x-installer-1", tag=TAG, accel="tcg",
                     memory_mb=1536, cpus=2, disk="/pool/install.qcow2",
                     console_path="/pool/installer-1.console.log")
    arguments.update(kwargs)
    return ET.fromstring(libvirt_xml.domain(**arguments))


def _qemu_args(root):
    return [arg.get("value") for arg in root.iter(QEMU + "arg")]


def test_bios_installer_domain_boots_the_kernel_on_pc():
    root = _domain(kernel="/pool/media-kernel", ramdisk="/pool/initrd",
                   cmdline="console=ttyS0 priority=critical",
                   cdroms=["/pool/installer-config.iso"])
    assert root.get("type") == "qemu"  # TCG
    assert root.findtext("name") == "imgfac-x-installer-1"
    assert root.find("memory").get("unit") == "MiB"
    assert (root.findtext("memory"), root.findtext("vcpu")) == ("1536", "2")
    os_ = root.find("os")
    assert os_.get("firmware") is None and os_.find("loader") is None
    assert os_.find("type").get("machine") == "pc"
    assert (os_.findtext("kernel"), os_.findtext("initrd"),
            os_.findtext("cmdline")) == ("/pool/media-kernel", "/pool/initrd",
                                         "console=ttyS0 priority=critical")
    assert root.find("cpu") is None  # x86-64-v1: QEMU's default model
    assert [root.findtext(e) for e in ("on_poweroff", "on_reboot",
                                       "on_crash")] == ["destroy"] * 3
    disk, cdrom = root.findall("devices/disk")
    assert disk.find("source").get("file") == "/pool/install.qcow2"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert cdrom.get("device") == "cdrom"
    assert cdrom.find("target").get("bus") == "ide"
    assert cdrom.find("readonly") is not None
    assert root.find("devices/controller") is None
    serial = root.find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == \
        "/pool/installer-1.console.log"
    assert _qemu_args(root) == [
        "-netdev", "user,id=imgfacnet", "-device",
        "virtio-net-pci,netdev=imgfacnet,bus=pci.0,addr=0x10"]


def test_domain_is_tagged_with_its_build():
    text = libvirt_xml.domain("imgfac-x-guest-2", TAG, "tcg", 1024, 1,
                              "/pool/guest.qcow2", "/pool/c.log")
    found = ET.fromstring(text).find("metadata/{%s}build"
                                     % libvirt_xml.NAMESPACE)
    assert found.get("build") == TAG.build
    assert libvirt_xml.tag_of(text) == TAG
    assert libvirt_xml.tag_of("<domain><metadata/></domain>") is None


def test_secure_boot_guest_domain_lets_libvirt_choose_the_firmware():
    machine = machine_model.Machine("Nehalem-v1", SB_FIRMWARE)
    root = _domain(machine=machine, level=2, ssh_port=2222,
                   nvram="/pool/uefi-vars.fd",
                   cdroms=["/pool/guest-config.iso"])
    os_ = root.find("os")
    assert os_.get("firmware") == "efi"
    assert os_.find("type").get("machine") == "q35"
    assert {f.get("name"): f.get("enabled") for f in
            os_.findall("firmware/feature")} == {
                "secure-boot": "yes", "enrolled-keys": "yes"}
    assert os_.find("loader").get("secure") == "yes"
    assert os_.findtext("nvram") == "/pool/uefi-vars.fd"
    assert os_.find("boot").get("dev") == "hd"
    assert root.find("features/smm").get("state") == "on"
    assert root.find("features/acpi") is not None  # the power button
    # The CD-ROM on virtio-scsi: q35's AHCI is not in every guest kernel.
    assert root.find("devices/controller").attrib == {
        "type": "scsi", "index": "0", "model": "virtio-scsi"}
    cdrom = root.findall("devices/disk")[1]
    assert cdrom.find("target").attrib == {"dev": "sda", "bus": "scsi"}
    # SSH forwarded to the host's loopback only.
    assert _qemu_args(root)[1] == \
        "user,id=imgfacnet,hostfwd=tcp:127.0.0.1:2222-:22"
    assert "bus=pcie.0" in _qemu_args(root)[3]


def test_uefi_without_secure_boot_asks_for_firmware_without_it():
    firmware = machine_model.Firmware("/c", "/v", secure_boot=False,
                                      smm=False)
    root = _domain(machine=machine_model.Machine(None, firmware),
                   nvram="/pool/uefi-vars.fd")
    assert {f.get("name"): f.get("enabled") for f in
            root.findall("os/firmware/feature")} == {
                "secure-boot": "no", "enrolled-keys": "no"}
    assert root.find("features/smm") is None


def test_tcg_cpu_requires_the_features_of_the_os_level():
    machine = machine_model.Machine("Haswell-v4", None)
    cpu = _domain(machine=machine, level=3).find("cpu")
    assert (cpu.get("mode"), cpu.get("check")) == ("custom", "partial")
    assert cpu.findtext("model") == libvirt_xml.BASE_CPU_MODEL
    assert cpu.find("model").get("fallback") == "forbid"
    required = {f.get("name") for f in cpu.findall("feature")
                if f.get("policy") == "require"}
    # libvirt's names: QEMU's, with lahf_lm as Linux spells it.
    assert {"sse4.2", "popcnt", "lahf_lm", "avx2", "bmi2", "movbe",
            "xsave"} <= required
    assert len(required) == len(machine_model.features(3))


def test_kvm_domain_passes_the_host_cpu_through():
    root = _domain(accel="kvm", machine=machine_model.Machine("host", None),
                   level=2)
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_pool_and_volumes():
    pool = ET.fromstring(libvirt_xml.pool("imgfac-b", "/var/lib/x/.work-b"))
    assert (pool.get("type"), pool.findtext("name"),
            pool.findtext("target/path")) == ("dir", "imgfac-b",
                                              "/var/lib/x/.work-b")
    blank = ET.fromstring(libvirt_xml.volume("install.qcow2", 2 * 1024 ** 3))
    assert blank.findtext("capacity") == str(2 * 1024 ** 3)
    assert blank.find("capacity").get("unit") == "bytes"
    assert blank.find("target/format").get("type") == "qcow2"
    assert blank.find("backingStore") is None
    overlay = ET.fromstring(libvirt_xml.volume(
        "guest.qcow2", 10, backing="/pool/jeos.qcow2", backing_format="raw"))
    assert overlay.findtext("backingStore/path") == "/pool/jeos.qcow2"
    assert overlay.find("backingStore/format").get("type") == "raw"

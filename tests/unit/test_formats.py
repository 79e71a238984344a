"""Disk format conversion (real qemu-img on small images) and OVA packing."""
import hashlib
import os
import subprocess
import tarfile
import threading

import pytest
from lxml import etree

from imgfac_nova.db import meta_files
from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.images import ova

MiB = 1024 ** 2


def test_conversion_arguments_per_format():
    args = {name: fmt.convert_arguments("in.img", "qcow2", "out.img")
            for name, fmt in formats.FORMATS.items()}
    common = ["convert", "-p", "-f", "qcow2", "-O"]
    assert args == {
        "qcow2": common + ["qcow2", "-c", "-o", "compat=1.1", "in.img",
                           "out.img"],
        "raw": common + ["raw", "in.img", "out.img"],
        "vmdk": common + ["vmdk", "-o", "subformat=streamOptimized,"
                          "adapter_type=lsilogic", "in.img", "out.img"],
        "vhd": common + ["vpc", "-o", "subformat=fixed,force_size=on",
                         "in.img", "out.img"],
        "vhdx": common + ["vhdx", "-o", "subformat=dynamic", "in.img",
                          "out.img"],
    }
    # A VHD is created to a whole MiB first, then converted into (-n).
    assert formats.FORMATS["vhd"].convert_arguments(
        "in.img", "raw", "out.vhd", existing=True) == [
        "convert", "-p", "-f", "raw", "-O", "vpc", "-n", "in.img", "out.vhd"]
    assert {f.disk_format for f in formats.FORMATS.values()} == {
        "qcow2", "raw", "vmdk", "vhd", "vhdx"}


@pytest.fixture
def source(tmp_path):
    """A raw image of 20 MiB + 4 KiB (not a whole MiB) with 3 MiB of
    compressible data and 64 KiB of random data in it."""
    path = str(tmp_path / "source.raw")
    with open(path, "wb") as handle:
        handle.truncate(20 * MiB + 4096)
        handle.write(b"imgfac-nova!" * (3 * MiB // 12))
        handle.seek(10 * MiB)
        handle.write(os.urandom(64 * 1024))
    return path


def test_a_conversion_past_its_time_is_stopped_and_leaves_nothing(
        source, tmp_path):
    out = tmp_path / "out.qcow2"
    with pytest.raises(errors.WaitTimeout, match=r"^qemu-img convert did not "
                       r"end within 0 s$"):
        formats.convert(source, "raw", str(out), formats.FORMATS["qcow2"],
                        timeout=1e-9)
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(formats.FORMATS))
def test_convert_and_verify(source, tmp_path, name):
    fmt = formats.FORMATS[name]
    out = str(tmp_path / ("out." + name))
    seen = []
    formats.convert(source, "raw", out, fmt, progress=seen.append)
    found = formats.verify(out, fmt)
    assert found["format"] == fmt.qemu_format
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)
    if name == "vhd":
        assert found["virtual-size"] == 21 * MiB  # rounded up
    else:
        assert found["virtual-size"] == 20 * MiB + 4096
    if name == "vmdk":
        assert found["format-specific"]["data"]["create-type"] == \
            "streamOptimized"
    if name == "qcow2":  # compressed: smaller than the data in it
        assert os.path.getsize(out) < MiB
    # The bytes are the same in any format.
    compare = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F",
                              fmt.qemu_format, source, out],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr


def test_verify_rejects_the_wrong_format(source, tmp_path):
    out = str(tmp_path / "out.vmdk")
    formats.convert(source, "raw", out, formats.FORMATS["qcow2"])
    with pytest.raises(errors.BuildError, match="claims vmdk but holds a "
                       "qcow2 header$"):
        formats.verify(out, formats.FORMATS["vmdk"])


def test_verify_finds_a_corrupt_image(source, tmp_path):
    out = str(tmp_path / "out.qcow2")
    formats.convert(source, "raw", out, formats.FORMATS["qcow2"])
    info = formats.info(out, "qcow2")
    with open(out, "r+b") as handle:  # break the first L2 table's pointer
        handle.seek(0x30)
        table = int.from_bytes(handle.read(8), "big")
        handle.seek(table)
        handle.write((2 ** 62 - 512).to_bytes(8, "big"))
    assert info["format"] == "qcow2"
    with pytest.raises(errors.BuildError, match="qemu-img (check|info) "
                       "failed"):
        formats.verify(out, formats.FORMATS["qcow2"])


def corrupt_qcow2(path):
    """A qcow2 image at ``path`` whose header passes inspection but whose
    first L2 table pointer is unaligned, so that reading its data fails."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "4M"],
                   check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 0 1M", path],
                   check=True, capture_output=True)
    with open(path, "r+b") as handle:
        handle.seek(0x28)  # the L1 table's offset
        handle.seek(int.from_bytes(handle.read(8), "big"))
        entry = int.from_bytes(handle.read(8), "big")
        handle.seek(-8, os.SEEK_CUR)
        handle.write((entry + 512).to_bytes(8, "big"))
    return path


def test_failed_conversion_leaves_nothing(tmp_path):
    bad = corrupt_qcow2(str(tmp_path / "bad.qcow2"))
    out = str(tmp_path / "out.raw")
    with pytest.raises(errors.BuildError, match="qemu-img convert failed: "
                       ".*Input/output error"):
        formats.convert(bad, "qcow2", out, formats.FORMATS["raw"])
    assert not os.path.exists(out)


def test_cancelled_conversion_leaves_nothing(source, tmp_path):
    cancel = threading.Event()
    cancel.set()
    out = str(tmp_path / "out.vhdx")
    with pytest.raises(errors.Cancelled):
        formats.convert(source, "raw", out, formats.FORMATS["vhdx"],
                        cancel=cancel)
    assert not os.path.exists(out)


OVF_NS = {"ovf": ova.OVF, "rasd": ova.RASD, "vssd": ova.VSSD, "vmw": ova.VMW}


def _ovf(text):
    return etree.fromstring(text)


def _attr(element, name, ns="ovf"):
    return element.get("{%s}%s" % (OVF_NS[ns], name))


def test_ovf_descriptor_has_what_an_import_needs():
    machine = ova.Machine("my image", "Debian", "12", cpus=2, memory_mb=2048,
                          network="VM Network")
    root = _ovf(ova.descriptor(machine, "my-image-disk1.vmdk", 12345,
                               10 * 1024 ** 3))
    assert root.tag == "{%s}Envelope" % ova.OVF
    files = root.findall("ovf:References/ovf:File", OVF_NS)
    assert [(_attr(f, "href"), _attr(f, "id"), _attr(f, "size"))
            for f in files] == [("my-image-disk1.vmdk", "file1", "12345")]
    disk, = root.findall("ovf:DiskSection/ovf:Disk", OVF_NS)
    assert _attr(disk, "capacity") == str(10 * 1024 ** 3)
    assert _attr(disk, "capacityAllocationUnits") == "byte"
    assert _attr(disk, "fileRef") == "file1"
    assert _attr(disk, "format").endswith("vmdk.html#streamOptimized")
    assert root.find("ovf:DiskSection/ovf:Info", OVF_NS) is not None
    network, = root.findall("ovf:NetworkSection/ovf:Network", OVF_NS)
    assert _attr(network, "name") == "VM Network"

    system = root.find("ovf:VirtualSystem", OVF_NS)
    assert _attr(system, "id") == "my-image"
    assert system.findtext("ovf:Name", namespaces=OVF_NS) == "my image"
    os_section = system.find("ovf:OperatingSystemSection", OVF_NS)
    assert _attr(os_section, "id") == "96"  # CIM: Debian 64-bit
    assert _attr(os_section, "osType", "vmw") == "debian12_64Guest"
    hardware = system.find("ovf:VirtualHardwareSection", OVF_NS)
    assert hardware.findtext("ovf:System/vssd:VirtualSystemType",
                             namespaces=OVF_NS) == "vmx-13"
    items = {}
    for item in hardware.findall("ovf:Item", OVF_NS):
        fields = [etree.QName(child).localname for child in item]
        assert fields == sorted(fields)  # the CIM schema's order
        items[item.findtext("rasd:ResourceType", namespaces=OVF_NS)] = {
            etree.QName(child).localname: child.text for child in item}
    assert items["3"]["VirtualQuantity"] == "2"
    assert items["4"]["VirtualQuantity"] == "2048"
    assert items["4"]["AllocationUnits"] == "byte * 2^20"
    assert items["6"]["ResourceSubType"] == "lsilogic"
    assert items["17"]["HostResource"] == "ovf:/disk/vmdisk1"
    assert items["17"]["Parent"] == items["6"]["InstanceID"]
    assert items["10"]["Connection"] == "VM Network"
    ids = [i["InstanceID"] for i in items.values()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name,version,expected", [
    ("Debian", "12", (96, "debian12_64Guest")),
    ("debian", "13", (96, "debian12_64Guest")),
    ("Ubuntu", "24.04", (94, "ubuntu64Guest")),
    ("RHEL", "9.4", (80, "rhel9_64Guest")),
    ("Fedora", "40", (101, "fedora64Guest")),
    ("Plan9", "4", (101, "otherLinux64Guest")),
])
def test_os_types(name, version, expected):
    assert ova.os_type(name, version) == expected


def test_ova_is_descriptor_disk_and_manifest_in_order(source, tmp_path):
    vmdk = str(tmp_path / "disk.vmdk")
    formats.convert(source, "raw", vmdk, formats.FORMATS["vmdk"])
    path = str(tmp_path / "out.ova")
    descriptor = ova.write(path, ova.Machine("ft", "Debian", "12"), vmdk,
                           20 * MiB + 4096)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names == ["ft.ovf", "ft-disk1.vmdk", "ft.mf"]
        ovf = tar.extractfile("ft.ovf").read()
        disk = tar.extractfile("ft-disk1.vmdk").read()
        manifest = tar.extractfile("ft.mf").read().decode()
    assert ovf == descriptor
    with open(vmdk, "rb") as handle:
        assert disk == handle.read()
    assert manifest == "SHA256(ft.ovf)= %s\nSHA256(ft-disk1.vmdk)= %s\n" % (
        hashlib.sha256(ovf).hexdigest(), hashlib.sha256(disk).hexdigest())
    size = _attr(_ovf(ovf).find("ovf:References/ovf:File", OVF_NS), "size")
    assert int(size) == len(disk)


# -- the formats plugin in the builder ----------------------------------------------

TEMPLATE = """<template><name>tiny</name><os><name>TestOS</name>
<version>1</version><arch>x86_64</arch>
<install type='url'><url>http://example.com/tree/</url></install></os>
<description>tiny</description></template>"""


@pytest.fixture
def builder(plugin_site, tmp_path):
    from imgfac_nova import build
    from imgfac_nova import store
    return build.Builder(None, store.ImageStore(str(tmp_path / "store")))


def _base(builder, size):
    from imgfac_nova import template
    job = builder.base_image(template.parse_template(TEMPLATE, "tiny.tdl"),
                             {"size": str(size)})
    assert job.wait(30)
    return builder.store.get(job.image.identifier)


def test_target_image_from_a_local_base(builder):
    from imgfac_nova import images
    base = _base(builder, 4 * MiB)
    job = builder.target_image("vhd", {}, base_id=base.identifier)
    assert job.wait(60)
    target = builder.store.get(job.image.identifier)
    assert target.status == images.COMPLETE, target.error
    assert target.plugin == "formats"
    assert target.properties["disk_format"] == "vhd"
    assert formats.verify(target.data, formats.FORMATS["vhd"])[
        "virtual-size"] == 4 * MiB
    with open(base.data, "rb") as handle:  # base untouched
        assert handle.read() == bytes(4 * MiB)
    assert sorted(n for n in os.listdir(builder.store.path)
                  if not n.startswith("imgfac-nova.sqlite")
                  and n != meta_files.DONE) == sorted(
        ["%s.%s" % (i, s) for i in (base.identifier, target.identifier)
         for s in ("body", "log")])


def test_failed_conversion_leaves_no_target_data(builder, tmp_path):
    from imgfac_nova import images
    base = _base(builder, 4096)
    # Make the base's data a qcow2 that qemu-img cannot read.
    os.unlink(base.data)
    corrupt_qcow2(base.data)
    builder.store.modify(base.identifier, lambda record:
                         record.properties.update(format="qcow2"))
    job = builder.target_image("vmdk", {}, base_id=base.identifier)
    assert job.wait(60)
    target = builder.store.get(job.image.identifier)
    assert target.status == images.FAILED
    assert target.error.startswith("qemu-img convert failed: ")
    assert target.data is None
    leftovers = [n for n in os.listdir(builder.store.path)
                 if n.startswith(target.identifier) and
                 not n.endswith(".log")]
    assert leftovers == []


def test_a_resumed_conversion_stops_the_qemu_img_an_earlier_run_left(
        monkeypatch):
    """A resumed target converts again; the qemu-img its dead process left
    converting (and locking the file) is stopped first, no other."""
    from imgfac_nova.plugins import formats
    from novaimagebuilder.machines import qemu
    partial = "/store/0b1c2d3e.body.part"
    found = {8001: ["qemu-img", "convert", "-O", "qcow2", "/store/0b1c2d3e"
                    ".body", partial],
             8002: ["qemu-img", "convert", "/store/other.body",
                    "/store/other.body.part"]}
    asked, killed, waited = [], [], []
    monkeypatch.setattr(qemu, "processes", lambda program: asked.append(
        program) or iter(list(found.items())))
    monkeypatch.setattr(qemu, "kill", killed.append)
    monkeypatch.setattr(qemu, "wait_gone", waited.append)
    formats.stop_earlier_conversion(partial)
    assert (asked, killed, waited) == (["qemu-img"], [8001], [8001])

"""libvirt XML for a build's machines and their storage.

A build's domain is transient and tagged: its name is
``imgfac-<build id>-<role>-<n>`` and its ``<metadata>`` carries an element
of :data:`NAMESPACE` with the build id, its role, the "host:pid" of the
process that made it and the image store, so a sweep finds it after a crash.
Firmware is libvirt's choice (``<os firmware='efi'>`` with the Secure Boot
features asked for), the CPU a model with the features of the OS's x86-64
level (:mod:`machine_model`), the serial console a file, and the network
QEMU's user-mode one with the guest's SSH port forwarded to 127.0.0.1 (as
local QEMU builds have it: the guest reaches the host at 10.0.2.2).
"""
import dataclasses
import re
import xml.etree.ElementTree as ET

from novaimagebuilder.machines import machine_model

#: The XML namespace of the build tag in a domain's metadata.
NAMESPACE = "https://opendev.org/imgfac-nova/xmlns/libvirt/build/1"
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
#: The CPU model whose named features a v2/v3 guest gets on top (TCG).
BASE_CPU_MODEL = "qemu64"


@dataclasses.dataclass(frozen=True)
class Tag:
    """What a build's domain says about itself in its metadata."""
    build: str
    role: str
    owner: str
    store: str


def _sub(parent, tag, text=None, **attrs):
    element = ET.SubElement(parent, tag, {k.rstrip("_"): str(v)
                                          for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


def _cpu(root, accel, machine, level):
    """The ``<cpu>`` element: the host's under KVM, else QEMU's base model
    with the x86-64 level's features required (libvirt refuses to start a
    domain this QEMU cannot give them); none for an x86-64-v1 OS."""
    if not machine or not machine.cpu:
        return
    if accel == "kvm":
        _sub(root, "cpu", mode="host-passthrough", check="none")
        return
    cpu = _sub(root, "cpu", mode="custom", match="exact",
               check="partial")
    _sub(cpu, "model", BASE_CPU_MODEL, fallback="forbid")
    for name in machine_model.features(level):
        _sub(cpu, "feature", policy="require", name=name.replace("-", "_"))


def _os(domain, machine, nvram, kernel, ramdisk, cmdline, boot):
    firmware = machine.firmware if machine else None
    os_ = _sub(domain, "os", **({"firmware": "efi"} if firmware else {}))
    _sub(os_, "type", "hvm", arch="x86_64",
         machine=machine.machine_type if machine else "pc")
    if firmware:
        wanted = _sub(os_, "firmware")
        secure = "yes" if firmware.secure_boot else "no"
        _sub(wanted, "feature", enabled=secure, name="secure-boot")
        _sub(wanted, "feature", enabled=secure, name="enrolled-keys")
        _sub(os_, "loader", secure=secure)
        _sub(os_, "nvram", nvram)
    if kernel:
        _sub(os_, "kernel", kernel)
        _sub(os_, "initrd", ramdisk)
        _sub(os_, "cmdline", cmdline or "")
    else:
        _sub(os_, "boot", dev="cdrom" if boot == "d" else "hd")


def _disks(devices, disk, disk_format, cdroms, machine):
    """The disk on virtio; the CD-ROMs on IDE (``pc``) or, on a ``q35``
    (whose AHCI not every guest kernel has), on virtio-scsi."""
    element = _sub(devices, "disk", type="file", device="disk")
    _sub(element, "driver", name="qemu", type=disk_format, cache="unsafe")
    _sub(element, "source", file=disk)
    _sub(element, "target", dev="vda", bus="virtio")
    scsi = machine is not None and machine.machine_type != "pc"
    if scsi and cdroms:
        _sub(devices, "controller", type="scsi", index=0, model="virtio-scsi")
    for number, cdrom in enumerate(cdroms):
        element = _sub(devices, "disk", type="file", device="cdrom")
        _sub(element, "driver", name="qemu", type="raw")
        _sub(element, "source", file=cdrom)
        _sub(element, "target", dev=("sd" if scsi else "hd")
             + "abcdefgh"[number], bus="scsi" if scsi else "ide")
        _sub(element, "readonly")


def domain(name, tag, accel, memory_mb, cpus, disk, console_path,
           disk_format="qcow2", cdroms=(), kernel=None, ramdisk=None,
           cmdline=None, ssh_port=None, boot="c", machine=None, level=1,
           nvram=None):
    """The XML of a transient domain (a string): ``machine`` is the
    machine_model.Machine (None: ``pc``, SeaBIOS, QEMU's default CPU),
    ``level`` the OS's x86-64 level, ``nvram`` the build's UEFI variables
    file (libvirt makes it from the firmware's template when missing)."""
    ET.register_namespace("imgfac", NAMESPACE)
    ET.register_namespace("qemu", QEMU_NAMESPACE)
    root = ET.Element("domain", type="kvm" if accel == "kvm" else "qemu")
    _sub(root, "name", name)
    metadata = _sub(root, "metadata")
    _sub(metadata, "{%s}build" % NAMESPACE, **dataclasses.asdict(tag))
    _sub(root, "memory", memory_mb, unit="MiB")
    _sub(root, "vcpu", cpus)
    _os(root, machine, nvram, kernel, ramdisk, cmdline, boot)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if machine and machine.firmware and machine.firmware.smm:
        _sub(features, "smm", state="on")
    _cpu(root, accel, machine, level)
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(root, event, "destroy")  # as QEMU's -no-reboot
    devices = _sub(root, "devices")
    _disks(devices, disk, disk_format, cdroms, machine)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=console_path)
    _sub(serial, "target", port=0)
    _sub(devices, "memballoon", model="none")
    # libvirt's user-mode interface forwards no ports (before passt): QEMU's
    # own, with the SSH port forwarded to the host's loopback.
    netdev = "user,id=imgfacnet"
    if ssh_port:
        netdev += ",hostfwd=tcp:127.0.0.1:%d-:22" % ssh_port
    # A slot libvirt leaves free: it does not know of this device.
    nic = "virtio-net-pci,netdev=imgfacnet,bus=%s,addr=0x10" % (
        "pcie.0" if machine and machine.machine_type != "pc" else "pci.0")
    arguments = _sub(root, "{%s}commandline" % QEMU_NAMESPACE)
    for value in ("-netdev", netdev, "-device", nic):
        _sub(arguments, "{%s}arg" % QEMU_NAMESPACE, value=value)
    return ET.tostring(root, encoding="unicode")


def tag_of(xml_text):
    """The build Tag in a domain's XML, or None when it has none."""
    found = ET.fromstring(xml_text).find("metadata/{%s}build" % NAMESPACE)
    if found is None:
        return None
    return Tag(**{field.name: found.get(field.name, "")
                  for field in dataclasses.fields(Tag)})


def described(xml_text):
    """What a build's domain XML says of its machine: ``{"name", "disk",
    "console_path", "ssh_port" (None: not forwarded)}``."""
    root = ET.fromstring(xml_text)
    disk = root.find("devices/disk[@device='disk']/source")
    serial = root.find("devices/serial/source")
    port = None
    for arg in root.iter("{%s}arg" % QEMU_NAMESPACE):
        found = re.search(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:22",
                          arg.get("value", ""))
        port = int(found.group(1)) if found else port
    return {"name": root.findtext("name"), "disk": disk.get("file"),
            "console_path": serial.get("path"), "ssh_port": port}


def pool(name, path):
    """A directory storage pool at ``path``."""
    root = ET.Element("pool", type="dir")
    _sub(root, "name", name)
    target = _sub(root, "target")
    _sub(target, "path", path)
    return ET.tostring(root, encoding="unicode")


def volume(name, capacity, backing=None, backing_format="qcow2"):
    """A qcow2 volume of ``capacity`` bytes, an overlay of ``backing`` (a
    path) when given."""
    root = ET.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", capacity, unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type="qcow2")
    if backing:
        store = _sub(root, "backingStore")
        _sub(store, "path", backing)
        _sub(store, "format", type=backing_format)
    return ET.tostring(root, encoding="unicode")

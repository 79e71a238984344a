"""OVA archives: an OVF 1.0 descriptor, a streamOptimized VMDK and a SHA-256
manifest in one tar, in that order (the order vSphere and VirtualBox read).

The descriptor declares what an import needs: the disk file and its
capacity, one network, and a virtual system with its operating-system type
(a CIM OS id and the vSphere ``osType``), CPUs, memory, a SCSI (LSI Logic)
controller holding the disk and an E1000 network card.
"""
import dataclasses
import hashlib
import io
import os
import re
import tarfile
import time

from lxml import etree

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = ("http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
        "CIM_ResourceAllocationSettingData")
VSSD = ("http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
        "CIM_VirtualSystemSettingData")
VMW = "http://www.vmware.com/schema/ovf"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {None: OVF, "ovf": OVF, "rasd": RASD, "vssd": VSSD, "vmw": VMW,
         "xsi": XSI}
VMDK_FORMAT = ("http://www.vmware.com/interfaces/specifications/"
               "vmdk.html#streamOptimized")

#: OS name (lower case) -> (CIM OsType for 64-bit, vSphere guest id).
_OS_TYPES = {
    "debian": (96, "debian{major}_64Guest"),
    "ubuntu": (94, "ubuntu64Guest"),
    "rhel": (80, "rhel{major}_64Guest"),
    "centos": (80, "centos{major}_64Guest"),
    "fedora": (101, "fedora64Guest"),
    "sles": (85, "sles{major}_64Guest"),
    "opensuse": (83, "opensuse64Guest"),
}
_OTHER_LINUX = (101, "otherLinux64Guest")
# Guest ids vSphere knows; newer versions fall back to the newest known.
_KNOWN_MAJORS = {"debian": 12, "rhel": 9, "centos": 9, "sles": 15}


@dataclasses.dataclass
class Machine:
    """What the virtual system in the descriptor looks like."""

    name: str
    os_name: str
    os_version: str
    cpus: int = 1
    memory_mb: int = 1024
    network: str = "VM Network"


def safe_name(name):
    """``name`` usable as a file name and OVF id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "image"


def os_type(os_name, os_version):
    """``(CIM OsType id, vSphere osType)`` for an OS name and version."""
    key = os_name.lower()
    cim, guest = _OS_TYPES.get(key, _OTHER_LINUX)
    major = str(os_version).split(".")[0]
    if "{major}" in guest:
        if not major.isdigit():
            return _OTHER_LINUX
        major = min(int(major), _KNOWN_MAJORS[key])
        guest = guest.format(major=major)
    return cim, guest


def _q(ns, tag):
    return "{%s}%s" % (ns, tag)


def _sub(parent, ns, tag, text=None, **attributes):
    element = etree.SubElement(parent, _q(ns, tag))
    for key, value in attributes.items():
        prefix, _, local = key.partition("_")
        element.set(_q(NSMAP[prefix], local), str(value))
    if text is not None:
        element.text = str(text)
    return element


def _item(section, **fields):
    """A hardware Item; the rasd elements must come in the schema's
    (alphabetical) order."""
    item = _sub(section, OVF, "Item")
    for name in sorted(fields):
        _sub(item, RASD, name, fields[name])
    return item


def descriptor(machine, disk_file, disk_file_size, capacity):
    """The OVF descriptor (bytes) of ``machine`` with one disk, the VMDK
    ``disk_file`` of ``disk_file_size`` bytes and ``capacity`` bytes of
    virtual size."""
    envelope = etree.Element(_q(OVF, "Envelope"), nsmap=NSMAP)
    envelope.set(_q(VMW, "buildId"), "imgfac-nova")
    references = _sub(envelope, OVF, "References")
    _sub(references, OVF, "File", ovf_href=disk_file, ovf_id="file1",
         ovf_size=disk_file_size)

    disks = _sub(envelope, OVF, "DiskSection")
    _sub(disks, OVF, "Info", "Virtual disk information")
    _sub(disks, OVF, "Disk", ovf_capacity=capacity,
         ovf_capacityAllocationUnits="byte", ovf_diskId="vmdisk1",
         ovf_fileRef="file1", ovf_format=VMDK_FORMAT)

    networks = _sub(envelope, OVF, "NetworkSection")
    _sub(networks, OVF, "Info", "The logical networks")
    network = _sub(networks, OVF, "Network", ovf_name=machine.network)
    _sub(network, OVF, "Description", "The %s network" % machine.network)

    system = _sub(envelope, OVF, "VirtualSystem",
                  ovf_id=safe_name(machine.name))
    _sub(system, OVF, "Info", "A virtual machine")
    _sub(system, OVF, "Name", machine.name)
    cim, guest = os_type(machine.os_name, machine.os_version)
    operating = _sub(system, OVF, "OperatingSystemSection", ovf_id=cim,
                     vmw_osType=guest)
    _sub(operating, OVF, "Info", "The operating system installed")
    _sub(operating, OVF, "Description",
         "%s %s" % (machine.os_name, machine.os_version))

    hardware = _sub(system, OVF, "VirtualHardwareSection")
    _sub(hardware, OVF, "Info", "Virtual hardware requirements")
    vsys = _sub(hardware, OVF, "System")
    _sub(vsys, VSSD, "ElementName", "Virtual Hardware Family")
    _sub(vsys, VSSD, "InstanceID", 0)
    _sub(vsys, VSSD, "VirtualSystemIdentifier", machine.name)
    _sub(vsys, VSSD, "VirtualSystemType", "vmx-13")
    _item(hardware, AllocationUnits="hertz * 10^6",
          Description="Number of virtual CPUs",
          ElementName="%d virtual CPU(s)" % machine.cpus, InstanceID=1,
          ResourceType=3, VirtualQuantity=machine.cpus)
    _item(hardware, AllocationUnits="byte * 2^20",
          Description="Memory size",
          ElementName="%d MB of memory" % machine.memory_mb, InstanceID=2,
          ResourceType=4, VirtualQuantity=machine.memory_mb)
    _item(hardware, Address=0, Description="SCSI controller",
          ElementName="SCSI controller 0", InstanceID=3,
          ResourceSubType="lsilogic", ResourceType=6)
    _item(hardware, AddressOnParent=0, ElementName="Hard disk 1",
          HostResource="ovf:/disk/vmdisk1", InstanceID=4, Parent=3,
          ResourceType=17)
    _item(hardware, AddressOnParent=7, AutomaticAllocation="true",
          Connection=machine.network,
          Description="E1000 ethernet adapter on %s" % machine.network,
          ElementName="Network adapter 1", InstanceID=5,
          ResourceSubType="E1000", ResourceType=10)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8",
                          pretty_print=True)


class _Hashing:
    """A file reader that hashes what it reads."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def write(path, machine, vmdk, capacity):
    """Write the OVA ``path`` holding ``vmdk`` (a streamOptimized VMDK of
    ``capacity`` bytes of virtual size); returns the descriptor."""
    base = safe_name(machine.name)
    disk_name = base + "-disk1.vmdk"
    size = os.path.getsize(vmdk)
    ovf = descriptor(machine, disk_name, size, capacity)
    sums = {}
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add_bytes(tar, base + ".ovf", ovf)
        sums[base + ".ovf"] = hashlib.sha256(ovf).hexdigest()
        info = tarfile.TarInfo(disk_name)
        info.size, info.mode, info.mtime = size, 0o644, time.time()
        with open(vmdk, "rb") as handle:
            reader = _Hashing(handle)
            tar.addfile(info, reader)
        sums[disk_name] = reader.digest.hexdigest()
        manifest = "".join("SHA256(%s)= %s\n" % item for item in sums.items())
        _add_bytes(tar, base + ".mf", manifest.encode())
    return ovf


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, time.time()
    tar.addfile(info, io.BytesIO(data))

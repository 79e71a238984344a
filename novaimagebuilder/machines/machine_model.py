"""The virtual machine an OS needs: its x86-64 level and the CPU model that
meets it, its firmware (SeaBIOS or OVMF) and machine type.

Enterprise Linux 9 is built for x86-64-v2 and 10 for x86-64-v3; their
installers stop at once on QEMU's default ``qemu64`` model. ``BASELINES``
says each OS's level; :func:`cpu_model` finds a CPU model QEMU can give it:
``host`` under KVM (when the host's CPU has the level), under TCG the first
model of ``TCG_MODELS`` that this QEMU emulates in full and that has the
level's features (QEMU 7.2 and later emulate x86-64-v3 in ``max``).

UEFI firmware is found through QEMU's firmware descriptors (the JSON files
of ``FIRMWARE_DIRS``, e.g. Debian's ``ovmf``), as libvirt finds it.
"""
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess

from novaimagebuilder import errors

DEFAULT_LEVEL = 1

#: Features of each x86-64 level above v1, as (Linux /proc/cpuinfo flag,
#: QEMU CPU property, Placement trait or None where os-traits has none); a
#: level has those of the levels below it too.
LEVEL_FEATURES = {
    2: (("cx16", "cx16", None), ("lahf_lm", "lahf-lm", None),
        ("popcnt", "popcnt", None), ("pni", "sse3", "HW_CPU_X86_SSE3"),
        ("sse4_1", "sse4.1", "HW_CPU_X86_SSE41"),
        ("sse4_2", "sse4.2", "HW_CPU_X86_SSE42"),
        ("ssse3", "ssse3", "HW_CPU_X86_SSSE3")),
    3: (("avx", "avx", "HW_CPU_X86_AVX"), ("avx2", "avx2", "HW_CPU_X86_AVX2"),
        ("bmi1", "bmi1", "HW_CPU_X86_BMI"), ("bmi2", "bmi2", "HW_CPU_X86_BMI2"),
        ("f16c", "f16c", "HW_CPU_X86_F16C"), ("fma", "fma", "HW_CPU_X86_FMA3"),
        ("abm", "abm", "HW_CPU_X86_ABM"), ("movbe", "movbe", None),
        ("xsave", "xsave", None)),
}

_EL = {(): 1, (9,): 2, (10,): 3}

#: Leading word of the lower-cased OS name -> {first release as a tuple of
#: numbers: x86-64 level}; the entry with the highest release not above the
#: template's applies. An OS not listed is x86-64-v1.
BASELINES = {
    "rhel": _EL, "redhat": _EL, "centos": _EL, "rocky": _EL,
    "rockylinux": _EL, "alma": _EL, "almalinux": _EL, "ol": _EL,
    "oraclelinux": _EL,
    "sles": {(): 1, (16,): 2}, "opensuse": {(): 1, (16,): 2},
}

#: CPU models tried under TCG, in order: the oldest that has a level first.
TCG_MODELS = ("Nehalem-v1", "Westmere-v1", "Haswell-v4", "Broadwell-v4",
              "Skylake-Client-v4", "EPYC-v3", "max")

QEMU = "qemu-system-x86_64"

#: Where QEMU's firmware descriptors live; a file in an earlier directory
#: hides one of the same name in a later one.
FIRMWARE_DIRS = ("/etc/qemu/firmware", "/usr/share/qemu/firmware")


def release(os_name, version):
    """The release as numbers: an Oz-style name's number first ("RHEL-9",
    "4" -> (9, 4)), else the version's ("9.4" -> (9, 4))."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version or ""))
    suffix = re.search(r"-(\d+)\s*$", os_name)
    return (int(suffix.group(1)),) + numbers if suffix else numbers


def level(os_name, version):
    """The x86-64 level (1, 2, 3) the OS release needs."""
    word = re.match(r"[a-z]*", os_name.strip().lower()).group()
    table = BASELINES.get(word, {})
    found = sorted(since for since in table
                   if since <= release(os_name, version))
    return table[found[-1]] if found else DEFAULT_LEVEL


def features(wanted, names=1):
    """The features of x86-64 level ``wanted`` (``names`` 0: Linux's flag
    names, 1: QEMU's property names, 2: Placement's trait names, where
    there is one)."""
    return [names_[names] for number, all_names in sorted(
        LEVEL_FEATURES.items()) if number <= wanted for names_ in all_names
        if names_[names]]


def _host_flags():
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    return set()


@functools.lru_cache(maxsize=None)
def tcg_models(binary=None):
    """``{model: set of its enabled QEMU features}`` of the models in
    ``TCG_MODELS`` that this QEMU emulates in full under TCG."""
    binary = binary or shutil.which(QEMU) or QEMU
    requests = [{"execute": "qmp_capabilities"},
                {"execute": "query-cpu-definitions"}]
    requests += [{"execute": "query-cpu-model-expansion",
                  "arguments": {"type": "full", "model": {"name": name}}}
                 for name in TCG_MODELS]
    requests.append({"execute": "quit"})
    try:
        done = subprocess.run(
            [binary, "-accel", "tcg", "-machine", "none", "-nodefaults",
             "-display", "none", "-qmp", "stdio"],
            input="".join(json.dumps(r) for r in requests),
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.BuildError("cannot ask %s for its CPU models: %s"
                                % (binary, exc)) from None
    replies = [json.loads(line) for line in done.stdout.splitlines()
               if line.startswith("{")]
    replies = [r for r in replies if "return" in r or "error" in r][1:]
    if len(replies) < 2 or "return" not in replies[0]:
        raise errors.BuildError("%s did not list its CPU models" % binary)
    complete = {d["name"] for d in replies[0]["return"]
                if not d.get("unavailable-features")}
    found = {}
    for name, reply in zip(TCG_MODELS, replies[1:]):
        props = reply.get("return", {}).get("model", {}).get("props", {})
        if name in complete and props:
            found[name] = {key for key, on in props.items() if on is True}
    return found


def cpu_model(accel, wanted, what="the OS", binary=None):
    """The ``-cpu`` model for a guest that needs x86-64 level ``wanted``
    under ``accel`` ("kvm" or "tcg"); None for QEMU's default (v1). A
    one-line BuildError when none can meet it."""
    if wanted <= DEFAULT_LEVEL:
        return None
    need = "%s needs an x86-64-v%d CPU" % (what, wanted)
    if accel == "kvm":
        missing = [f for f in features(wanted, 0) if f not in _host_flags()]
        if missing:
            raise errors.BuildError(
                "%s, and this host's CPU lacks %s: build it on a newer host"
                % (need, ", ".join(missing)))
        return "host"
    for name, enabled in tcg_models(binary).items():
        if set(features(wanted)) <= enabled:
            return name
    raise errors.BuildError(
        "%s, and QEMU under TCG emulates no CPU model with %s (QEMU 7.2 and "
        "later do): use KVM or a newer QEMU" % (need, ", ".join(
            features(wanted))))


@dataclasses.dataclass(frozen=True)
class Firmware:
    """A UEFI firmware: its code and NVRAM template (flash images)."""
    code: str
    vars_template: str
    secure_boot: bool
    smm: bool
    description: str = ""


def _descriptors(dirs):
    seen = {}
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(".json") and name not in seen:
                seen[name] = os.path.join(directory, name)
    return [seen[name] for name in sorted(seen)]


def _matches(data, secure_boot):
    mapping = data.get("mapping", {})
    targets = [t for t in data.get("targets", ())
               if t.get("architecture") == "x86_64"
               and any(pattern.startswith("pc-q35")
                       for pattern in t.get("machines", ()))]
    feats = set(data.get("features", ()))
    wanted_sb = {"secure-boot", "enrolled-keys"} <= feats
    return ("uefi" in data.get("interface-types", ()) and targets
            and mapping.get("device") == "flash"
            and mapping.get("executable", {}).get("format", "raw") == "raw"
            and (wanted_sb if secure_boot else "secure-boot" not in feats))


def uefi_firmware(secure_boot=False, dirs=FIRMWARE_DIRS):
    """The first UEFI firmware for x86_64 q35 machines (with Secure Boot on
    and Microsoft's keys enrolled when ``secure_boot``) whose files exist;
    a one-line BuildError when there is none."""
    for path in _descriptors(dirs):
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not _matches(data, secure_boot):
            continue
        mapping = data["mapping"]
        code = mapping["executable"]["filename"]
        template = mapping.get("nvram-template", {}).get("filename")
        if template and os.path.exists(code) and os.path.exists(template):
            return Firmware(code, template, secure_boot,
                            "requires-smm" in data.get("features", ()),
                            data.get("description", ""))
    raise errors.BuildError(
        "no UEFI firmware%s for x86_64 q35 machines in %s (Debian: apt-get "
        "install ovmf)" % (" with Secure Boot and enrolled keys"
                           if secure_boot else "", " or ".join(dirs)))


@dataclasses.dataclass(frozen=True)
class Machine:
    """What a local build's VMs are: CPU model (None: QEMU's default),
    machine type and firmware (None: SeaBIOS)."""
    cpu: str = None
    firmware: Firmware = None

    @property
    def machine_type(self):
        return "q35" if self.firmware else "pc"

    def scope(self):
        """What shapes an installed system, for the JEOS cache key."""
        found = {}
        if self.cpu:
            found["cpu"] = self.cpu
        if self.firmware:
            found["firmware"] = "uefi-secure-boot" \
                if self.firmware.secure_boot else "uefi"
        return found


def for_os(os_name, version, accel, firmware="bios", secure_boot=False):
    """The Machine for a build of the OS release under ``accel``; a one-line
    BuildError when this host cannot give one."""
    if secure_boot and firmware != "uefi":
        raise errors.BuildError("secure_boot needs firmware uefi")
    what = "%s %s" % (os_name, version)
    cpu = cpu_model(accel, level(os_name, version), what)
    return Machine(cpu, uefi_firmware(secure_boot)
                   if firmware == "uefi" else None)

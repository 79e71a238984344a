"""Glance properties that let Nova boot an image well and say where it came
from, derived from what the build knows; an operator's own on top.

Nova's (Glance's "useful image properties"): ``os_distro``, ``os_version``,
``os_type``, ``architecture``, ``hw_disk_bus`` (with ``hw_scsi_model`` for
SCSI), ``hw_vif_model``, ``hw_firmware_type``/``hw_machine_type``/
``os_secure_boot`` for UEFI builds, ``hw_qemu_guest_agent`` and
``os_require_quiesce`` when the guest agent is installed, and
``trait:HW_CPU_X86_...=required`` for the CPU features of the x86-64 level
the OS needs, so the scheduler picks a host that has them. Provenance as the
Sovereign Cloud Stack's image metadata standard (SCS-0102) asks:
``image_build_date`` (UTC, ``YYYY-MM-DD hh:mm``), ``image_original_user``
(the build's login user), ``image_source`` (a URL, or ``private``) and
``image_description``; and its update policy, which only the operator
knows: ``replace_frequency``, ``provided_until`` and ``uuid_validity``
(mandatory; by default ``never``, ``none``, ``none``: no promises) and
``hotfix_hours`` (optional). ``min_disk`` and ``min_ram``, which SCS-0102
also requires, are image fields, not properties: the plugins set them.

:func:`merged` puts an operator's properties over the derived ones and
refuses, in one line, those that contradict what the build made.
"""
import datetime
import json
import re

from novaimagebuilder import errors

#: os_distro values (Glance's list, libosinfo's short ids) for the leading
#: word of a lower-cased template OS name.
OS_DISTRO = {"rhel": "rhel", "redhat": "rhel", "centos": "centos",
             "fedora": "fedora", "debian": "debian", "ubuntu": "ubuntu",
             "sles": "sles", "opensuse": "opensuse", "windows": "windows",
             "rocky": "rocky", "rockylinux": "rocky", "alma": "almalinux",
             "almalinux": "almalinux", "ol": "ol", "oraclelinux": "ol"}
#: Glance's architecture values for TDL arch names.
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "i386": "i686",
                 "i686": "i686", "aarch64": "aarch64", "arm64": "aarch64",
                 "ppc64le": "ppc64le", "s390x": "s390x"}
SCSI_MODEL = "virtio-scsi"
#: SCS-0102's replace_frequency values.
REPLACE_FREQUENCIES = ("yearly", "quarterly", "monthly", "weekly", "daily",
                       "critical_bug", "never")
#: An image's update policy until its operator says otherwise (SCS-0102).
NO_PROMISES = {"replace_frequency": "never", "provided_until": "none",
               "uuid_validity": "none"}
PRIVATE_SOURCE = "private"
#: Properties the build owns (its tags), which no operator sets.
RESERVED = ("imgfac_build_id", "imgfac_role", "imgfac_template",
            "imgfac_base_image")
#: The machine's properties (with trait:*), see :func:`machine`.
MACHINE_KEYS = ("hw_firmware_type", "hw_machine_type", "os_secure_boot")
#: Image fields with parameters of their own, not properties.
FIELDS = ("min_disk", "min_ram", "name", "visibility", "disk_format",
          "container_format")


def _word(os_name):
    return re.match(r"[a-z]*", os_name.strip().lower()).group()


def derived(os_name, os_version, arch, *, default_user=None, firmware="bios",
            secure_boot=False, guest_agent=False, hw_disk_bus="virtio",
            hw_vif_model="virtio", description=None, built=None,
            source=PRIVATE_SOURCE, cpu_traits=()):
    """The properties of an image of ``os_name`` ``os_version`` (``arch``)
    built as the arguments say (``built``: an aware datetime, default
    now; ``cpu_traits``: the Placement traits of the CPU level the OS
    needs, required of the host)."""
    word = _word(os_name)
    built = (built or datetime.datetime.now(datetime.timezone.utc))
    props = {
        "os_distro": OS_DISTRO.get(word, word or os_name.lower()),
        "os_version": os_version,
        "os_type": "windows" if word == "windows" else "linux",
        "architecture": ARCHITECTURES.get(arch.lower(), arch.lower()),
        "hw_disk_bus": hw_disk_bus,
        "hw_vif_model": hw_vif_model,
        "image_build_date": built.astimezone(
            datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "image_original_user": default_user or "none",
        "image_source": source,
        "image_description": description or "%s %s" % (os_name, os_version),
    }
    props.update(NO_PROMISES)
    if hw_disk_bus == "scsi":
        props["hw_scsi_model"] = SCSI_MODEL
    props.update(machine(firmware, secure_boot, cpu_traits))
    if guest_agent:
        props["hw_qemu_guest_agent"] = "yes"
        props["os_require_quiesce"] = "yes"
    return props


def machine_only(props):
    """The properties of ``props`` that :func:`machine` gives."""
    return {key: value for key, value in props.items()
            if key.startswith("trait:") or key in MACHINE_KEYS}


def machine(firmware="bios", secure_boot=False, cpu_traits=()):
    """The properties that make Nova give a server the machine the build
    made its system for: UEFI on q35 (Secure Boot required) and a host with
    the ``cpu_traits``."""
    props = {"trait:" + trait: "required" for trait in cpu_traits}
    if firmware == "uefi":
        props["hw_firmware_type"] = "uefi"
        props["hw_machine_type"] = "q35"
        if secure_boot:
            props["os_secure_boot"] = "required"
    return props


def parse(text, what="image_properties"):
    """An operator's properties: a JSON object of names to strings (numbers
    and booleans are written as Glance keeps them). One-line BuildError."""
    if isinstance(text, dict):
        given = text
    else:
        try:
            given = json.loads(text or "{}")
        except ValueError as exc:
            raise errors.BuildError("%s is not JSON: %s" % (what, exc)) \
                from None
    if not isinstance(given, dict):
        raise errors.BuildError("%s must be a JSON object of property names "
                                "and values" % what)
    props = {}
    for key, value in given.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)) or not key.strip():
            raise errors.BuildError("%s: %r must be a text or number"
                                    % (what, key))
        props[key.strip()] = str(value)
    return props


def _contradiction(key, value, props):
    """Why ``key=value`` contradicts the derived ``props``, or None."""
    uefi = props.get("hw_firmware_type") == "uefi"
    secure = props.get("os_secure_boot") == "required"
    if key in RESERVED:
        return "is the build's own tag"
    if key in FIELDS:
        return "is an image field: give the %s parameter" % key
    if key == "architecture" and value != props["architecture"]:
        return "contradicts the template's arch %s" % props["architecture"]
    if key == "hw_firmware_type" and value != props.get("hw_firmware_type",
                                                        "bios"):
        return ("contradicts the build's firmware %s (the firmware "
                "parameter)" % ("uefi" if uefi else "bios"))
    if key == "os_secure_boot" and value == "required" and not secure:
        return "needs a build with secure_boot true"
    if key == "hw_machine_type" and secure and "q35" not in value:
        return "contradicts Secure Boot, which needs a q35 machine"
    if key.startswith("trait:") and value == "forbidden" and \
            props.get(key) == "required":
        return "but the OS needs that CPU feature"
    if key == "image_source" and value != PRIVATE_SOURCE and not re.match(
            r"(https?|ftps?)://", value):
        return "must be a URL or 'private' (SCS-0102)"
    if key == "image_build_date" and not _date(value):
        return "must be YYYY-MM-DD or YYYY-MM-DD hh:mm[:ss] in UTC (SCS-0102)"
    if key == "replace_frequency" and value not in REPLACE_FREQUENCIES:
        return "must be one of %s (SCS-0102)" % ", ".join(REPLACE_FREQUENCIES)
    if key == "provided_until" and value not in ("none", "notice") and \
            not _date(value):
        return "must be YYYY-MM-DD, none or notice (SCS-0102)"
    if key == "uuid_validity" and value not in (
            "none", "notice", "forever") and not _date(value) and \
            not re.fullmatch(r"last-\d+", value):
        return "must be YYYY-MM-DD, last-N, none, notice or forever (SCS-0102)"
    if key == "hotfix_hours" and not value.isdecimal():
        return "must be a number of hours (SCS-0102)"
    return None


def _date(value):
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def merged(props, given, what="image_properties"):
    """``props`` with the operator's ``given`` over them; a one-line
    BuildError naming the first property that contradicts the build."""
    result = dict(props)
    for key, value in parse(given, what).items():
        why = _contradiction(key, value, props)
        if why:
            raise errors.BuildError("%s: %s=%s %s" % (what, key, value, why))
        result[key] = value
    return result

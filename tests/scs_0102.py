"""What SCS-0102 v1 (the Sovereign Cloud Stack's image metadata standard,
Standards/scs-0102-v1-image-metadata.md) finds wrong with an image: each
property the text makes mandatory, with the value rules of the standard's
own checker (Tests/iaas/scs_0102_image_metadata) where it has one.

Mandatory in the text: ``architecture``, ``min_disk`` (GiB), ``min_ram``
(MiB), ``os_version``, ``os_distro``, ``hw_disk_bus`` (technical
requirements); ``replace_frequency``, ``provided_until``,
``uuid_validity`` (image updating; ``hotfix_hours`` is optional but, when
set, a number); ``image_source``, ``image_description`` (origin);
``image_build_date``, ``image_original_user`` (build info).
"""
import calendar
import re
import time

#: The checker's architectures (OpenStack's values it admits).
ARCHITECTURES = ("x86_64", "aarch64", "risc-v")
DISK_BUSES = ("virtio", "scsi")
REPLACE_FREQUENCIES = ("yearly", "quarterly", "monthly", "weekly", "daily",
                       "critical_bug", "never")
DATE_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y-%m-%d")


def seconds(text):
    """A date of the formats the checker takes, as Unix seconds (0: not
    one)."""
    for fmt in DATE_FORMATS:
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    return 0


def _update_policy(props):
    found = []
    if props.get("replace_frequency") not in REPLACE_FREQUENCIES:
        found.append("replace_frequency")
    until = props.get("provided_until") or ""
    if until not in ("none", "notice") and not seconds(until):
        found.append("provided_until")
    validity = props.get("uuid_validity") or ""
    if validity not in ("none", "notice", "forever") and not seconds(
            validity) and not re.fullmatch(r"last-\d+", validity):
        found.append("uuid_validity")
    hotfix = props.get("hotfix_hours")
    if hotfix is not None and not str(hotfix).isdecimal():
        found.append("hotfix_hours")
    return found


def offences(props, min_disk, min_ram, size=None, created=None):
    """The names of the mandatory SCS-0102 properties that ``props`` (an
    image's properties, Glance's fields among them) lacks or gets wrong;
    ``size`` the image file's bytes, ``created`` its registration
    (Unix seconds), when known."""
    found = [key for key in ("os_version", "image_original_user",
                             "image_description") if not props.get(key)]
    distro = props.get("os_distro") or ""
    if not distro or distro != distro.lower():  # OpenStack's are lower-case
        found.append("os_distro")
    if props.get("architecture") not in ARCHITECTURES:
        found.append("architecture")
    if props.get("hw_disk_bus") not in DISK_BUSES:
        found.append("hw_disk_bus")
    if not min_disk or size and min_disk * 1024 ** 3 < size:
        found.append("min_disk")
    if not min_ram:
        found.append("min_ram")
    source = props.get("image_source") or ""
    if source != "private" and not re.match(r"(https?|ftps?)://", source):
        found.append("image_source")
    built = seconds(props.get("image_build_date") or "")
    if not built or built > (created or time.time()):
        found.append("image_build_date")
    return found + _update_policy(props)


def glance_offences(image):
    """offences() of a Glance image (openstacksdk's), its fields and
    properties as Glance gives them."""
    props = dict(image.properties or {})
    props.update({key: getattr(image, key) for key in (
        "architecture", "os_distro", "os_version", "hw_disk_bus")})
    return offences(props, image.min_disk, image.min_ram, image.size,
                    seconds(image.created_at))

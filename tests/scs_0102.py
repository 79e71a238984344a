"""What SCS-0102 v1 (the Sovereign Cloud Stack's image metadata standard)
finds wrong with an image: its mandatory properties, with the value rules
of the standard's own checker (Tests/iaas/scs_0102_image_metadata)."""
import calendar
import re
import time

ARCHITECTURES = ("x86_64", "aarch64", "risc-v")
DISK_BUSES = ("virtio", "scsi")
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


def offences(props, min_disk, min_ram, size=None, created=None):
    """The names of the mandatory SCS-0102 properties that ``props`` (an
    image's properties, Glance's fields among them) lacks or gets wrong;
    ``size`` the image file's bytes, ``created`` its registration
    (Unix seconds), when known."""
    found = [key for key in ("os_distro", "os_version", "image_original_user",
                             "image_description") if not props.get(key)]
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
    return found

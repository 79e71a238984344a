"""ICICLE: the manifest of packages installed in an image.

The document has Image Factory's (Oz's) shape::

    <icicle>
      <description>...</description>
      <packages>
        <package name="bash-5.2.26-3.fc40.x86_64"/>
        <package name="curl-8.6.0-7.fc40.x86_64"><extra>...</extra></package>
      </packages>
    </icicle>

``<extra>`` holds the output line of the TDL's ``<icicle><extra_command>``
for that package: as in Oz, the extra command must print one line per
package, in the package database's order.
"""

import dataclasses

from lxml import etree

from novaimagebuilder import errors

#: Package queries by OS family: one line per package, in database order.
#: rpm prints what "rpm -qa" prints (name-version-release.arch); dpkg
#: prints name_version_arch and the state, to skip removed packages.
QUERIES = {
    "redhat": "rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n'",
    "suse": "rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n'",
    "debian": "dpkg-query -W -f '${db:Status-Abbrev} "
              "${Package}_${Version}_${Architecture}\\n'",
}


class IcicleError(errors.BuildError):
    """The package list could not be read."""


@dataclasses.dataclass(frozen=True)
class Package:
    """One installed package and its extra command output (or None)."""
    name: str
    extra: str | None = None

    def sort_key(self):
        return self.name, self.extra or ""


def _entries(family, output):
    """One name per database entry of ``QUERIES[family]`` output; None for
    dpkg entries that are not installed (e.g. only configuration left)."""
    entries = []
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        if family == "debian":
            status, _, line = line.partition(" ")
            line = line.strip() if status[1:2] == "i" else None
        entries.append(line)
    return entries


def parse_packages(family, output):
    """Installed package names from the output of ``QUERIES[family]``."""
    return [name for name in _entries(family, output) if name]


def read_packages(guest, family, extra_command=None):
    """The packages installed in ``guest``, sorted by name.

    ``family`` is "redhat", "debian" or "suse" (package_managers.os_family).
    ``extra_command`` is the TDL's ICICLE extra command, run as root; its
    output lines are paired with the package database entries in order
    and kept as each Package's ``extra``.
    """
    try:
        query = QUERIES[family]
    except KeyError:
        raise IcicleError(f"no package query for OS family '{family}'") \
            from None
    _, output = guest.run(query, privileged=False, name="list packages",
                          merge_stderr=False)
    names = _entries(family, output)
    extras = [None] * len(names)
    if extra_command:
        _, extra_output = guest.run(extra_command, privileged=True,
                                    name="ICICLE extra command",
                                    merge_stderr=False)
        extras = [line for line in extra_output.splitlines() if line.strip()]
        if len(extras) != len(names):
            raise IcicleError(
                f"the ICICLE extra command printed {len(extras)} lines for "
                f"{len(names)} packages; it must print one line per package "
                "in the package database's order")
    return sorted((Package(name, extra)
                   for name, extra in zip(names, extras) if name),
                  key=Package.sort_key)


def icicle_xml(packages, description=None):
    """The ICICLE document (text) for ``packages``.

    ``packages`` holds Package objects or plain names; they are written
    sorted by name, without duplicates.
    """
    root = etree.Element("icicle")
    if description is not None:
        etree.SubElement(root, "description").text = description
    listing = etree.SubElement(root, "packages")
    entries = {(p if isinstance(p, Package) else Package(p)) for p in packages}
    for package in sorted(entries, key=Package.sort_key):
        if not package.name:
            continue
        element = etree.SubElement(listing, "package", name=package.name)
        if package.extra is not None:
            etree.SubElement(element, "extra").text = package.extra
    return etree.tostring(root, pretty_print=True, xml_declaration=True,
                          encoding="UTF-8").decode("utf-8")

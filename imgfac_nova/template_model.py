"""The parsed TDL template: what to install and how to customize it.

``imgfac_nova.template`` reads a template into these objects.
"""
import base64
import binascii
import dataclasses
import re
from typing import NamedTuple

from lxml import etree

from imgfac_nova import template_xml
from imgfac_nova.template_limits import human_size
from novaimagebuilder import scrub


REDACTED = "REDACTED"

# Elements whose text is secret, relative to <template>.
_SECRET_ELEMENTS = ("os/rootpw", "os/key",
                    "repositories/repository/clientkey")


class Checksum(NamedTuple):
    """Checksum of an install ISO: the element name and its text.

    As in Oz, the value is usually the URL of a checksum file.
    """
    type: str
    value: str


@dataclasses.dataclass(frozen=True)
class Install:
    """How the OS is installed: from an install tree URL or from an ISO."""
    type: str
    url: str | None = None
    iso: str | None = None
    checksum: Checksum | None = None

    @property
    def location(self):
        """The install tree URL or the ISO location, whichever applies."""
        return self.url if self.type == "url" else self.iso


@dataclasses.dataclass(frozen=True)
class OperatingSystem:
    """The <os> section."""
    name: str
    version: str
    arch: str
    install: Install
    rootpw: str | None = dataclasses.field(default=None, repr=False)
    key: str | None = dataclasses.field(default=None, repr=False)
    kernelparam: str | None = None
    icicle_extra_command: str | None = None


@dataclasses.dataclass(frozen=True)
class Package:
    """A package to install, optionally from a named repository or file."""
    name: str
    repository: str | None = None
    file: str | None = None
    args: str | None = None
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Repository:
    """A package repository made available in the guest."""
    name: str
    url: str
    signed: bool = False
    persisted: bool = True
    sslverify: bool = False
    clientcert: str | None = None
    clientkey: str | None = dataclasses.field(default=None, repr=False)
    cacert: str | None = None
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Content:
    """Something the template puts into the guest: a file or a command.

    ``content`` is the element text without surrounding whitespace (as in
    Oz): the text itself (type raw), base64 text, or a URL to fetch.
    """
    name: str
    type: str
    content: str
    line: int | None = dataclasses.field(default=None, compare=False)

    @property
    def data(self):
        """The bytes of raw or base64 content; None for a URL."""
        if self.type == "raw":
            return self.content.encode("utf-8")
        if self.type == "base64":
            return decode_base64(self.content)
        return None


@dataclasses.dataclass(frozen=True)
class File(Content):
    """A file to create in the guest; ``name`` is its path."""


@dataclasses.dataclass(frozen=True)
class Command(Content):
    """A command to run in the guest; ``name`` labels it.

    ``position`` is the explicit order given in the template, if any.
    """
    position: int | None = None


@dataclasses.dataclass
class Template:
    """A validated TDL template."""
    name: str
    description: str | None
    os: OperatingSystem
    packages: list
    repositories: list
    files: list
    precommands: list
    commands: list
    disk_size: int | None
    source: str = "<string>"
    xml: str = dataclasses.field(default="", repr=False)

    def summary(self):
        """Short human-readable lines saying what would be built."""
        install = self.os.install
        location = scrub.scrub(install.location)
        lines = [f"Template: {self.name}"]
        if self.description:
            lines.append("Description: "
                         + shorten(self.description.splitlines()[0], 72))
        lines.append(f"OS: {self.os.name} {self.os.version} ({self.os.arch})")
        if install.type == "url":
            lines.append(f"Install: from the install tree {location}")
        elif install.checksum:
            lines.append(f"Install: from the ISO {location}"
                         f" (verified with {install.checksum.type})")
        else:
            lines.append(f"Install: from the ISO {location}")
        lines.append("Customization: " + ", ".join((
            _count(self.repositories, "repository", "repositories"),
            _count(self.packages, "package"),
            _count(self.files, "file"),
            _count(self.precommands, "precommand"),
            _count(self.commands, "command"))))
        if self.disk_size is None:
            lines.append("Disk: default size")
        else:
            lines.append(f"Disk: {human_size(self.disk_size)}")
        return lines

    def redacted_xml(self):
        """The template as XML with secrets replaced by REDACTED.

        Root password, product key, repository client keys and passwords in
        URLs are hidden; comments are dropped.  Meant for image metadata.
        """
        root = template_xml.parse_xml(self.xml, self.source)
        for path in _SECRET_ELEMENTS:
            for element in root.iterfind(path):
                if (element.text or "").strip():
                    element.text = REDACTED
        for element in root.iter():
            if element.text:
                element.text = scrub.scrub(element.text)
            for attribute, value in element.attrib.items():
                element.set(attribute, scrub.scrub(value))
        return etree.tostring(root, encoding="unicode")


def decode_base64(text):
    """Decode base64 that may be wrapped over lines; ValueError if invalid."""
    compact = "".join(text.split())
    if compact and not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", compact):
        raise ValueError("not base64")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def shorten(text, width):
    """``text`` cut to ``width`` characters, marked with ... if cut."""
    return text if len(text) <= width else text[:width - 3] + "..."


def _count(items, singular, plural=None):
    if len(items) == 1:
        return f"1 {singular}"
    return f"{len(items)} {plural or singular + 's'}"

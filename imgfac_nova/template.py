"""TDL templates: safe parsing, validation and a small object model.

TDL is the XML template language of Oz and Image Factory: which operating
system to install and how, then which repositories, packages, files and
commands customize it.  ``load_template`` and ``parse_template`` accept the
language as Oz does and return a ``Template``; anything else raises
``TemplateError``, whose text is one line "<file>:<line>: <what is wrong>".

Parsing is defensive: input is capped in bytes and elements (``Limits``;
64 MiB and 200,000 by default, the ``max_template_bytes`` and
``max_template_elements`` options), DOCTYPE declarations (and with them
entities and DTDs) are refused, the XML parser never expands entities,
loads DTDs or touches the network, and libxml2's nesting-depth limit stays
in force.

The structure is checked element by element here, to give precise
messages; the RELAX NG grammar in ``schemas/tdl.rng`` is then applied to
every template as the formal definition of the language.

Where this module differs from Oz.  More lenient: surrounding whitespace
in values is ignored, base64 may be wrapped over lines, the children of
<install> may come in any order, an XML encoding declaration is allowed
(the text is UTF-8 regardless), and repositories may carry <clientcert>,
<clientkey> and <cacert> as in older Oz and Image Factory templates.
Stricter: names, OS name and version, URLs (also of url-type files) and
ISO locations must not be empty, a disk size of zero is refused, any
loopback address (also with a port, or inside an apt source line) counts
as localhost for repositories, XInclude is not supported, ISO
``<extras>`` (files of the build host copied into the install ISO) are
refused, and so is a ``<rootpw>`` that is an MD5-crypt (``$1$``) hash.  Oz
fetches url-type files and commands while parsing; here they are only
recorded.
"""

import base64
import binascii
import dataclasses
import functools
import importlib.resources
import ipaddress
import os
import re
import threading
import urllib.parse
from typing import NamedTuple

from lxml import etree

from imgfac_nova.template_limits import DEFAULT_LIMITS
from imgfac_nova.template_limits import Limits
from novaimagebuilder import scrub


ARCHITECTURES = ("i386", "x86_64", "aarch64", "armv7l", "ppc64", "ppc64le",
                 "s390x")
CHECKSUM_TYPES = ("md5sum", "sha1sum", "sha256sum")
CONTENT_TYPES = ("raw", "base64", "url")
REDACTED = "REDACTED"

_NO_DOCTYPE = "DOCTYPE declarations (DTDs, entities) are not allowed"

# Elements whose text is secret, relative to <template>.
_SECRET_ELEMENTS = ("os/rootpw", "os/key",
                    "repositories/repository/clientkey")


class TemplateError(ValueError):
    """A template that cannot be used; str() is "<source>:<line>: <message>".

    ``line`` is None for problems with the file as a whole (unreadable, too
    large); then str() is "<source>: <message>". ``column`` (1-based) is set
    when the position on the line is known.
    """

    def __init__(self, source, line, message, column=None):
        self.source = source
        self.line = line
        self.column = column
        self.message = " ".join(str(message).split())
        super().__init__(source, line, self.message)

    def __str__(self):
        if self.line:
            return f"{self.source}:{self.line}: {self.message}"
        return f"{self.source}: {self.message}"


# ---------------------------------------------------------------- model

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
            return _decode_base64(self.content)
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
                         + _shorten(self.description.splitlines()[0], 72))
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
            lines.append(f"Disk: {_human_size(self.disk_size)}")
        return lines

    def redacted_xml(self):
        """The template as XML with secrets replaced by REDACTED.

        Root password, product key, repository client keys and passwords in
        URLs are hidden; comments are dropped.  Meant for image metadata.
        """
        root = _parse_xml(self.xml, self.source)
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


# ---------------------------------------------------------------- entry points

def load_template(path, limits=DEFAULT_LIMITS):
    """Read and validate the template file at ``path``."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read(limits.max_bytes + 1)
    except OSError as exc:
        raise TemplateError(source, None, "cannot read template: "
                            + (exc.strerror or str(exc))) from None
    if len(data) > limits.max_bytes:
        raise TemplateError(source, None, _too_large(limits))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TemplateError(source, line,
                            "template is not valid UTF-8 text") from None
    return parse_template(text, source, limits)


def parse_template(text, source="<string>", limits=DEFAULT_LIMITS):
    """Validate TDL ``text`` and return a Template; ``source`` names it."""
    root = _parse_xml(text, source, limits)
    return _Reader(source).read(root, text)


#: The sections a customization outside a template may carry (target
#: content): the template's repositories, packages, files and commands.
CONTENT_SECTIONS = ("repositories", "packages", "files", "commands")


def parse_content(element, text, source):
    """The customization sections inside ``element`` (an element parsed from
    ``text``, named ``source`` in errors), checked as in a template: a dict
    of ``repositories``, ``packages``, ``files`` and ``commands`` lists.
    ``element`` may hold only those sections; its own attributes are the
    caller's."""
    reader = _Reader(source)
    reader.lines = text.splitlines()
    shape = _Shape(attributes=tuple(element.attrib), children={
        name: _TEMPLATE.children[name] for name in CONTENT_SECTIONS})
    reader.check_shape(element, shape)
    content = {
        "repositories": [reader.repository(e)
                         for e in element.iterfind("repositories/*")],
        "packages": [reader.package(e) for e in element.iterfind("packages/*")],
        "files": [reader.file(e) for e in element.iterfind("files/*")],
        "commands": reader.commands(element.find("commands")),
    }
    for section in element:
        reader._validate(_schema(_LIST_SECTIONS[section.tag]), section)
    return content


def _too_large(limits):
    return (f"template is larger than {_human_size(limits.max_bytes)} "
            "(the max_template_bytes option)")


# ---------------------------------------------------------------- XML parsing

_PROLOG_ITEM = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
# Parts of libxml2 messages that mean nothing to a template author.
_LIBXML_NOISE = re.compile(
    r",? use XML_PARSE_HUGE option|, line \d+, column \d+$")


def _parse_xml(text, source, limits=None):
    """Parse ``text`` safely into an element tree, or raise TemplateError.

    ``limits`` None is for text that has passed them already.
    ``huge_tree`` only lifts libxml2's 10 MB cap on one text node (a big
    inline file); entity expansion cannot happen (no DOCTYPE gets this far)
    and the nesting depth stays capped.
    """
    text = text.lstrip("\ufeff")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise TemplateError(source, None, "template is not valid text") from None
    limits = limits or Limits(len(data), float("inf"))
    if len(data) > limits.max_bytes:
        raise TemplateError(source, None, _too_large(limits))
    doctype_line = _doctype_line(text)
    if doctype_line:
        raise TemplateError(source, doctype_line, _NO_DOCTYPE)
    parser = etree.XMLParser(
        encoding="utf-8", resolve_entities=False, no_network=True,
        load_dtd=False, dtd_validation=False, huge_tree=True,
        remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        message = _LIBXML_NOISE.sub("", exc.msg or str(exc))
        raise TemplateError(source, exc.lineno or 1,
                            f"XML syntax error: {message}",
                            column=exc.position[1] or None) from None
    if root.getroottree().docinfo.doctype:
        raise TemplateError(source, 1, _NO_DOCTYPE)
    for count, element in enumerate(root.iter(), start=1):
        if count > limits.max_elements:
            raise TemplateError(source, element.sourceline, "template has "
                                f"more than {limits.max_elements} elements "
                                "(the max_template_elements option)")
    return root


def _doctype_line(text):
    """Line of a DOCTYPE in the prolog of ``text``, or None.

    Checked before parsing so that entity declarations never reach the
    parser; only the prolog is scanned, so the word in content is fine.
    """
    position = 0
    while match := _PROLOG_ITEM.match(text, position):
        position = match.end()
    if text.startswith("<!DOCTYPE", position):
        return text.count("\n", 0, position) + 1
    return None


_RNG = "{http://relaxng.org/ns/structure/1.0}"

#: The list sections of <template> and the grammar's definition of each.
#: They are validated one by one: libxml2 validates the children of an
#: <interleave> in time that grows with the square of their number.
_LIST_SECTIONS = {"packages": "packagesSection",
                  "repositories": "repositoriesSection",
                  "files": "filesSection",
                  "precommands": "precommandsSection",
                  "commands": "commandsSection"}


@functools.lru_cache(maxsize=None)
def _schema(start=None):
    """The RELAX NG validator for TDL, or for its definition ``start``
    (built once each)."""
    data = importlib.resources.files("imgfac_nova.schemas").joinpath(
        "tdl.rng").read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True,
                             load_dtd=False)
    grammar = etree.fromstring(data, parser)
    if start:
        element = grammar.find(_RNG + "start")
        element[:] = [etree.Element(_RNG + "ref", name=start)]
    return etree.RelaxNG(grammar)


_schema_lock = threading.Lock()     # a validator's error log is shared state


# ---------------------------------------------------------------- structure

class _Shape(NamedTuple):
    """What an element may hold: children as tag -> (count, shape)."""
    children: dict = {}
    attributes: tuple = ()
    text: bool = False


_ONE, _OPTIONAL, _MANY = "one", "optional", "many"
_TEXT = _Shape(text=True)
_ISO_EXTRA = _Shape(attributes=("source", "destination"))
_COMMANDS = _Shape({"command": (_MANY, _Shape(
    attributes=("name", "type", "position"), text=True))})
_TEMPLATE = _Shape(attributes=("version",), children={
    "name": (_ONE, _TEXT),
    "description": (_OPTIONAL, _TEXT),
    "os": (_ONE, _Shape({
        "name": (_ONE, _TEXT),
        "version": (_ONE, _TEXT),
        "arch": (_ONE, _TEXT),
        "install": (_ONE, _Shape(attributes=("type",), children={
            "url": (_OPTIONAL, _TEXT),
            "iso": (_OPTIONAL, _TEXT),
            "md5sum": (_OPTIONAL, _TEXT),
            "sha1sum": (_OPTIONAL, _TEXT),
            "sha256sum": (_OPTIONAL, _TEXT),
            "extras": (_OPTIONAL, _Shape({"directory": (_MANY, _ISO_EXTRA),
                                          "file": (_MANY, _ISO_EXTRA)})),
        })),
        "rootpw": (_OPTIONAL, _TEXT),
        "key": (_OPTIONAL, _TEXT),
        "kernelparam": (_OPTIONAL, _TEXT),
        "icicle": (_OPTIONAL, _Shape({"extra_command": (_ONE, _TEXT)})),
    })),
    "packages": (_OPTIONAL, _Shape({"package": (_MANY, _Shape(
        attributes=("name",), children={
            "repository": (_OPTIONAL, _TEXT),
            "file": (_OPTIONAL, _TEXT),
            "arguments": (_OPTIONAL, _TEXT),
        }))})),
    "repositories": (_OPTIONAL, _Shape({"repository": (_MANY, _Shape(
        attributes=("name",), children={
            "url": (_ONE, _TEXT),
            "signed": (_OPTIONAL, _TEXT),
            "persisted": (_OPTIONAL, _TEXT),
            "sslverify": (_OPTIONAL, _TEXT),
            "clientcert": (_OPTIONAL, _TEXT),
            "clientkey": (_OPTIONAL, _TEXT),
            "cacert": (_OPTIONAL, _TEXT),
        }))})),
    "files": (_OPTIONAL, _Shape({"file": (_MANY, _Shape(
        attributes=("name", "type"), text=True))})),
    "precommands": (_OPTIONAL, _COMMANDS),
    "commands": (_OPTIONAL, _COMMANDS),
    "disk": (_OPTIONAL, _Shape({"size": (_ONE, _TEXT)})),
})

_XINCLUDE = "{http://www.w3.org/2001/XInclude}"


# ---------------------------------------------------------------- reading

class _Reader:
    """Checks one parsed template and builds the Template object."""

    def __init__(self, source):
        self.source = source
        self.text = ""

    def error(self, where, message, column=None):
        """A TemplateError at an element (or line number)."""
        line = where if isinstance(where, int) else where.sourceline
        if column is None and not isinstance(where, int) and line:
            # Split only for an error: a big template is not split to be read.
            lines = self.text.splitlines()
            if line <= len(lines):
                column = lines[line - 1].find("<" + str(where.tag)) + 1 or None
        return TemplateError(self.source, line, message, column=column)

    def read(self, root, text):
        self.text = text
        if root.tag != "template":
            raise self.error(root, "the root element must be <template>, "
                             f"not <{root.tag}>")
        self.check_shape(root, _TEMPLATE)
        version = root.get("version")
        if version is not None and version.strip() != "1.0":
            raise self.error(root, f"unsupported TDL version {_quote(version)}; "
                             "only version 1.0 is known")
        template = Template(
            name=self.required_text(root, "name"),
            description=_child_text(root, "description"),
            os=self.operating_system(root.find("os")),
            packages=[self.package(e) for e in root.iterfind("packages/*")],
            repositories=[self.repository(e)
                          for e in root.iterfind("repositories/*")],
            files=[self.file(e) for e in root.iterfind("files/*")],
            precommands=self.commands(root.find("precommands")),
            commands=self.commands(root.find("commands")),
            disk_size=self.disk_size(root.find("disk/size")),
            source=self.source,
            xml=text,
        )
        self.check_schema(root)
        return template

    # -- structure

    def check_shape(self, element, shape):
        """Check children, attributes and text of ``element`` recursively."""
        tag = element.tag
        for attribute in element.attrib:
            if attribute not in shape.attributes:
                raise self.error(element, f"unexpected attribute "
                                 f"'{attribute}' on <{tag}>")
        if not shape.text and (element.text or "").strip():
            first = element[0] if len(element) else None
            line = _text_line(element.text, first, element.sourceline)
            raise self.error(line, f"unexpected text in <{tag}>")
        seen = set()
        for child in element:
            if not shape.text and (child.tail or "").strip():
                line = _text_line(child.tail, child.getnext(),
                                  _end_line(child))
                raise self.error(line, f"unexpected text in <{tag}>")
            if child.tag.startswith(_XINCLUDE):
                raise self.error(child, "XInclude is not supported")
            if shape.text:
                raise self.error(child, f"<{tag}> may contain only text, "
                                 f"not <{child.tag}>")
            if child.tag not in shape.children:
                allowed = ", ".join(f"<{name}>" for name in shape.children
                                    ) or "no elements"
                raise self.error(child, f"unexpected element <{child.tag}> "
                                 f"in <{tag}>; allowed here: {allowed}")
            count, child_shape = shape.children[child.tag]
            if count != _MANY and child.tag in seen:
                raise self.error(child, f"<{tag}> may contain only one "
                                 f"<{child.tag}>")
            seen.add(child.tag)
            self.check_shape(child, child_shape)
        for name, (count, _) in shape.children.items():
            if count == _ONE and name not in seen:
                raise self.error(element, f"<{tag}> is missing <{name}>")

    def check_schema(self, root):
        """Apply the RELAX NG grammar (the formal definition of TDL): to the
        template with its list sections emptied, then to each section."""
        sections = [(child, list(child)) for child in root
                    if child.tag in _LIST_SECTIONS]
        for section, children in sections:
            section[:] = []
        try:
            self._validate(_schema(), root)
        finally:
            for section, children in sections:
                section[:] = children
        for section, _ in sections:
            self._validate(_schema(_LIST_SECTIONS[section.tag]), section)

    def _validate(self, schema, element):
        with _schema_lock:
            if schema.validate(element):
                return
            errors = list(schema.error_log)
        first = next((e for e in errors if e.line > 0), errors[0])
        raise self.error(first.line or element.sourceline,
                         f"does not match the TDL schema: {first.message}",
                         column=first.column or None)

    # -- values

    def required_text(self, parent, tag):
        child = parent.find(tag)
        value = _text(child)
        if value is None:
            raise self.error(child, f"<{tag}> in <{parent.tag}> is empty")
        return value

    def required_attribute(self, element, name):
        value = (element.get(name) or "").strip()
        if not value:
            raise self.error(element, f"<{element.tag}> needs a non-empty "
                             f"{name} attribute")
        return value

    def content_type(self, element, what):
        value = element.get("type")
        if value is None:
            return "raw"
        if value.strip() not in CONTENT_TYPES:
            raise self.error(element, f"unknown type {_quote(value)} for {what}; "
                             "expected raw, base64 or url")
        return value.strip()

    def yes_no(self, parent, tag, default):
        child = parent.find(tag)
        if child is None:
            return default
        value = (child.text or "").strip().lower()
        if value in ("yes", "true"):
            return True
        if value in ("no", "false"):
            return False
        raise self.error(child, f"<{tag}> must be yes, no, true or false, "
                         f"not {_quote(child.text or '')}")

    # -- sections

    def operating_system(self, element):
        name = self.required_text(element, "name")
        version = self.required_text(element, "version")
        arch = self.required_text(element, "arch")
        if arch not in ARCHITECTURES:
            raise self.error(element.find("arch"), f"unknown architecture "
                             f"{_quote(arch)}; expected one of "
                             + ", ".join(ARCHITECTURES))
        return OperatingSystem(
            name=name,
            version=version,
            arch=arch,
            install=self.install(element.find("install")),
            rootpw=self.rootpw(element.find("rootpw")),
            key=_child_text(element, "key"),
            kernelparam=_child_text(element, "kernelparam"),
            icicle_extra_command=_child_text(element,
                                             "icicle/extra_command"),
        )

    def install(self, element):
        kind = element.get("type")
        if kind is None:
            raise self.error(element, "<install> needs a type attribute, "
                             "'url' or 'iso'")
        kind = kind.strip()
        if kind not in ("url", "iso"):
            raise self.error(element, f"unknown install type {_quote(kind)}; "
                             "expected 'url' or 'iso'")
        allowed = ("url",) if kind == "url" else ("iso", "extras",
                                                  *CHECKSUM_TYPES)
        for child in element:
            if child.tag not in allowed:
                raise self.error(child, f"<{child.tag}> is not allowed in "
                                 f"<install type='{kind}'>")
            if child.tag == "extras":
                raise self.error(child, "<extras> is not supported: files "
                                 "of the build host are not copied into the "
                                 "install ISO; put what the image needs in "
                                 "<files> or the install script")
        if element.find(kind) is None:
            raise self.error(element, f"<install type='{kind}'> is missing "
                             f"<{kind}>")
        location = self.required_text(element, kind)
        if kind == "url":
            return Install(type="url", url=location)
        return Install(type="iso", iso=location,
                       checksum=self.checksum(element))

    def rootpw(self, element):
        """The root password (or its crypt hash); an MD5-crypt hash and its
        relatives are refused as too weak."""
        from novaimagebuilder.scripts import inputs
        value = _text(element)
        weak = value and inputs.weak_hash(value)
        if weak:
            raise self.error(element, f"<rootpw> is an {weak} hash, too weak "
                             "to protect the root password; give a SHA-512 "
                             "($6$) or yescrypt ($y$) hash, or the password "
                             "(the install script gets its SHA-512 hash)")
        return value

    def checksum(self, install):
        sums = [child for child in install if child.tag in CHECKSUM_TYPES]
        if len(sums) > 1:
            raise self.error(sums[1], "only one checksum is allowed: "
                             "<md5sum>, <sha1sum> or <sha256sum>")
        if not sums or _text(sums[0]) is None:
            return None
        return Checksum(sums[0].tag, _text(sums[0]))

    def package(self, element):
        return Package(name=self.required_attribute(element, "name"),
                       repository=_child_text(element, "repository"),
                       file=_child_text(element, "file"),
                       args=_child_text(element, "arguments"),
                       line=element.sourceline)

    def repository(self, element):
        name = self.required_attribute(element, "name")
        url = self.required_text(element, "url")
        host = self.url_host(element.find("url"), url)
        if host and _is_local_host(host):
            raise self.error(element.find("url"), f"repository '{name}' "
                             f"points at the build host ({host}); the guest "
                             "cannot reach it there")
        if (element.find("clientkey") is not None
                and element.find("clientcert") is None):
            raise self.error(element.find("clientkey"), f"repository "
                             f"'{name}' has <clientkey> but no <clientcert>")
        return Repository(
            name=name, url=url,
            signed=self.yes_no(element, "signed", False),
            persisted=self.yes_no(element, "persisted", True),
            sslverify=self.yes_no(element, "sslverify", False),
            clientcert=_child_text(element, "clientcert"),
            clientkey=_child_text(element, "clientkey"),
            cacert=_child_text(element, "cacert"),
            line=element.sourceline)

    def url_host(self, element, url):
        """Host of ``url``, or of the first URL in it (an apt source line)."""
        embedded = re.search(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", url)
        try:
            return urllib.parse.urlsplit(
                embedded.group() if embedded else url).hostname
        except ValueError:
            raise self.error(element, f"{_quote(scrub.scrub(url))} is "
                             "not a valid URL") from None

    def file(self, element):
        name = self.required_attribute(element, "name")
        what = f"<file name='{name}'>"
        kind = self.content_type(element, what)
        content = (element.text or "").strip()
        self.check_content(element, what, kind, content)
        return File(name=name, type=kind, content=content,
                    line=element.sourceline)

    def check_content(self, element, what, kind, content):
        if kind == "base64":
            try:
                _decode_base64(content)
            except ValueError:
                raise self.error(element, f"content of {what} is not valid "
                                 "base64") from None
        elif kind == "url" and not content:
            raise self.error(element, f"{what} of type url needs a URL")

    def commands(self, section):
        """The commands of <commands> or <precommands>, in run order."""
        if section is None:
            return []
        commands = [self.command(element) for element in section]
        positioned = [c for c in commands if c.position is not None]
        if not positioned:
            return commands
        if len(positioned) < len(commands):
            bare = next(c for c in commands if c.position is None)
            raise self.error(bare.line, f"<command name='{bare.name}'> has "
                             f"no position but others in <{section.tag}> "
                             "do; give every command a position or none")
        by_position = {}
        for command in commands:
            if command.position in by_position:
                other = by_position[command.position]
                raise self.error(command.line, f"position {command.position}"
                                 f" is used twice in <{section.tag}> (also by "
                                 f"<command name='{other.name}'>)")
            by_position[command.position] = command
        ordered = sorted(commands, key=lambda c: c.position)
        for expected, command in enumerate(ordered, start=1):
            if command.position != expected:
                raise self.error(command.line, f"positions in "
                                 f"<{section.tag}> must run from 1 to "
                                 f"{len(commands)} without gaps; "
                                 f"<command name='{command.name}'> has "
                                 f"position {command.position}")
        return ordered

    def command(self, element):
        name = self.required_attribute(element, "name")
        what = f"<command name='{name}'>"
        kind = self.content_type(element, what)
        content = (element.text or "").strip()
        if not content:
            raise self.error(element, f"{what} is empty")
        self.check_content(element, what, kind, content)
        position = element.get("position")
        if position is not None:
            if not re.fullmatch(r"[0-9]+", position.strip()):
                raise self.error(element, f"position {_quote(position)} of {what} "
                                 "must be a whole number")
            position = int(position)
        return Command(name=name, type=kind, content=content,
                       position=position, line=element.sourceline)

    def disk_size(self, element):
        """Disk size in bytes; None when not given (the builder's default)."""
        if element is None or _text(element) is None:
            return None
        text = _text(element)
        match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", text)
        factor = match and _SIZE_UNITS.get(match.group(2).lower())
        if not factor:
            raise self.error(element, f"invalid disk size {_quote(text)}: give a "
                             "whole number and optionally a unit (B, G, T, "
                             "KB, MB, GB, TB, ..., KiB, MiB, GiB, TiB, ...); "
                             "a bare number means GiB")
        size = int(match.group(1)) * factor
        if size == 0:
            raise self.error(element, "disk size must be larger than zero")
        return size


# Units as Oz reads them: a bare number, "G" and "T" are binary for
# backwards compatibility; "xB" is decimal and "xiB" binary.
_SIZE_UNITS = {"": 2**30, "b": 1, "g": 2**30, "t": 2**40}
for _power, _prefix in enumerate("kmgtpezy", start=1):
    _SIZE_UNITS[_prefix + "b"] = 1000 ** _power
    _SIZE_UNITS[_prefix + "ib"] = 1024 ** _power


# ---------------------------------------------------------------- helpers

def _text(element):
    """Stripped text of ``element``; None if it is absent or empty."""
    if element is None:
        return None
    return (element.text or "").strip() or None


def _text_line(text, following, start_line):
    """Line where the non-blank part of ``text`` starts.

    Counted back from the element that follows the text if there is one
    (exact), else forward from ``start_line``, the line the text starts on.
    """
    if following is not None:
        return following.sourceline - text.lstrip().count("\n")
    return start_line + text[:len(text) - len(text.lstrip())].count("\n")


def _end_line(element):
    """Line of the end tag of ``element`` (assuming one-line start tags)."""
    if len(element):
        last = element[-1]
        return _end_line(last) + (last.tail or "").count("\n")
    return element.sourceline + (element.text or "").count("\n")


def _child_text(parent, path):
    return _text(parent.find(path))


def _decode_base64(text):
    """Decode base64 that may be wrapped over lines; ValueError if invalid."""
    compact = "".join(text.split())
    if compact and not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", compact):
        raise ValueError("not base64")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _is_local_host(host):
    """True if ``host`` names the machine itself (loopback or unspecified)."""
    host = host.lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain") or host.endswith(
            ".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _quote(value):
    """A user-supplied value for an error message: quoted and kept short."""
    return "'" + _shorten(" ".join(value.split()), 40) + "'"


def _shorten(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _count(items, singular, plural=None):
    if len(items) == 1:
        return f"1 {singular}"
    return f"{len(items)} {plural or singular + 's'}"


def _human_size(size):
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                         ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if size % factor == 0:
            return f"{size // factor} {unit} ({size} bytes)"
    return f"{size} bytes"

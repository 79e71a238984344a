"""Reading TDL templates: checks and the Template they describe.

TDL is the XML template language of Oz and Image Factory: which operating
system to install and how, then which repositories, packages, files and
commands customize it.  ``load_template`` and ``parse_template`` accept the
language as Oz does and return a ``template_model.Template``; anything else
raises ``template_xml.TemplateError``, whose text is one line
"<file>:<line>: <what is wrong>".  The XML is parsed safely
(:mod:`template_xml`, within ``Limits``: the ``max_template_bytes`` and
``max_template_elements`` options), its structure checked element by element
and against the grammar (:mod:`template_structure`), its values here.

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
import ipaddress
import os
import re
import urllib.parse

from imgfac_nova import template_structure as structure
from imgfac_nova import template_xml
from imgfac_nova.template_limits import DEFAULT_LIMITS
from imgfac_nova.template_limits import too_large
from imgfac_nova.template_model import Checksum
from imgfac_nova.template_model import Command
from imgfac_nova.template_model import File
from imgfac_nova.template_model import Install
from imgfac_nova.template_model import OperatingSystem
from imgfac_nova.template_model import Package
from imgfac_nova.template_model import Repository
from imgfac_nova.template_model import Template
from imgfac_nova.template_model import decode_base64
from imgfac_nova.template_model import shorten
from imgfac_nova.template_xml import TemplateError
from novaimagebuilder import scrub


ARCHITECTURES = ("i386", "x86_64", "aarch64", "armv7l", "ppc64", "ppc64le",
                 "s390x")
CHECKSUM_TYPES = ("md5sum", "sha1sum", "sha256sum")
CONTENT_TYPES = ("raw", "base64", "url")


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
        raise TemplateError(source, None, too_large(limits))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TemplateError(source, line,
                            "template is not valid UTF-8 text") from None
    return parse_template(text, source, limits)


def parse_template(text, source="<string>", limits=DEFAULT_LIMITS):
    """Validate TDL ``text`` and return a Template; ``source`` names it."""
    root = template_xml.parse_xml(text, source, limits)
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
    reader.text = text
    shape = structure.Shape(attributes=tuple(element.attrib), children={
        name: structure.TEMPLATE.children[name] for name in CONTENT_SECTIONS})
    structure.check_shape(element, shape, reader.error)
    content = {
        "repositories": [reader.repository(e)
                         for e in element.iterfind("repositories/*")],
        "packages": [reader.package(e) for e in element.iterfind("packages/*")],
        "files": [reader.file(e) for e in element.iterfind("files/*")],
        "commands": reader.commands(element.find("commands")),
    }
    for section in element:
        structure.check_section(section, reader.error)
    return content


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
        structure.check_shape(root, structure.TEMPLATE, self.error)
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
        structure.check_schema(root, self.error)
        return template

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
                decode_base64(content)
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


def _text(element):
    """Stripped text of ``element``; None if it is absent or empty."""
    if element is None:
        return None
    return (element.text or "").strip() or None


def _child_text(parent, path):
    return _text(parent.find(path))


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
    return "'" + shorten(" ".join(value.split()), 40) + "'"

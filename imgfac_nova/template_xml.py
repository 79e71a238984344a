"""Safe XML parsing of TDL, its RELAX NG grammar, and the error every
problem with a template raises.

Parsing is defensive: input is capped in bytes and elements (``Limits``),
DOCTYPE declarations (and with them entities and DTDs) are refused, the XML
parser never expands entities, loads DTDs or touches the network, and
libxml2's nesting-depth limit stays in force.
"""
import functools
import importlib.resources
import re
import threading

from lxml import etree

from imgfac_nova import template_limits


_NO_DOCTYPE = "DOCTYPE declarations (DTDs, entities) are not allowed"


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


_PROLOG_ITEM = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
# Parts of libxml2 messages that mean nothing to a template author.
_LIBXML_NOISE = re.compile(
    r",? use XML_PARSE_HUGE option|, line \d+, column \d+$")


def parse_xml(text, source, limits=None):
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
    limits = limits or template_limits.Limits(len(data), float("inf"))
    if len(data) > limits.max_bytes:
        raise TemplateError(source, None, template_limits.too_large(limits))
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
LIST_SECTIONS = {"packages": "packagesSection",
                 "repositories": "repositoriesSection",
                 "files": "filesSection",
                 "precommands": "precommandsSection",
                 "commands": "commandsSection"}


@functools.lru_cache(maxsize=None)
def schema(start=None):
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


def validate(validator, element):
    """``None`` if ``element`` matches ``validator`` (a :func:`schema`), else
    the first error as ``(line, column, message)``, 0 when unknown."""
    with _schema_lock:
        if validator.validate(element):
            return None
        errors = list(validator.error_log)
    first = next((e for e in errors if e.line > 0), errors[0])
    return first.line, first.column, first.message

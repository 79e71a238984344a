"""What each TDL element may hold, checked element by element for precise
messages, then the RELAX NG grammar (``schemas/tdl.rng``), the formal
definition of the language, applied to the whole.

The checks raise what ``error(where, message, column=None)`` returns for an
element or a line number (the reader's ``TemplateError``).
"""
from typing import NamedTuple

from imgfac_nova import template_xml


class Shape(NamedTuple):
    """What an element may hold: children as tag -> (count, shape)."""
    children: dict = {}
    attributes: tuple = ()
    text: bool = False


_ONE, _OPTIONAL, _MANY = "one", "optional", "many"
_TEXT = Shape(text=True)
_ISO_EXTRA = Shape(attributes=("source", "destination"))
_COMMANDS = Shape({"command": (_MANY, Shape(
    attributes=("name", "type", "position"), text=True))})
TEMPLATE = Shape(attributes=("version",), children={
    "name": (_ONE, _TEXT),
    "description": (_OPTIONAL, _TEXT),
    "os": (_ONE, Shape({
        "name": (_ONE, _TEXT),
        "version": (_ONE, _TEXT),
        "arch": (_ONE, _TEXT),
        "install": (_ONE, Shape(attributes=("type",), children={
            "url": (_OPTIONAL, _TEXT),
            "iso": (_OPTIONAL, _TEXT),
            "md5sum": (_OPTIONAL, _TEXT),
            "sha1sum": (_OPTIONAL, _TEXT),
            "sha256sum": (_OPTIONAL, _TEXT),
            "extras": (_OPTIONAL, Shape({"directory": (_MANY, _ISO_EXTRA),
                                         "file": (_MANY, _ISO_EXTRA)})),
        })),
        "rootpw": (_OPTIONAL, _TEXT),
        "key": (_OPTIONAL, _TEXT),
        "kernelparam": (_OPTIONAL, _TEXT),
        "icicle": (_OPTIONAL, Shape({"extra_command": (_ONE, _TEXT)})),
    })),
    "packages": (_OPTIONAL, Shape({"package": (_MANY, Shape(
        attributes=("name",), children={
            "repository": (_OPTIONAL, _TEXT),
            "file": (_OPTIONAL, _TEXT),
            "arguments": (_OPTIONAL, _TEXT),
        }))})),
    "repositories": (_OPTIONAL, Shape({"repository": (_MANY, Shape(
        attributes=("name",), children={
            "url": (_ONE, _TEXT),
            "signed": (_OPTIONAL, _TEXT),
            "persisted": (_OPTIONAL, _TEXT),
            "sslverify": (_OPTIONAL, _TEXT),
            "clientcert": (_OPTIONAL, _TEXT),
            "clientkey": (_OPTIONAL, _TEXT),
            "cacert": (_OPTIONAL, _TEXT),
        }))})),
    "files": (_OPTIONAL, Shape({"file": (_MANY, Shape(
        attributes=("name", "type"), text=True))})),
    "precommands": (_OPTIONAL, _COMMANDS),
    "commands": (_OPTIONAL, _COMMANDS),
    "disk": (_OPTIONAL, Shape({"size": (_ONE, _TEXT)})),
})

_XINCLUDE = "{http://www.w3.org/2001/XInclude}"


def check_shape(element, shape, error):
    """Check children, attributes and text of ``element`` recursively."""
    tag = element.tag
    for attribute in element.attrib:
        if attribute not in shape.attributes:
            raise error(element, f"unexpected attribute '{attribute}' on "
                        f"<{tag}>")
    if not shape.text and (element.text or "").strip():
        first = element[0] if len(element) else None
        line = _text_line(element.text, first, element.sourceline)
        raise error(line, f"unexpected text in <{tag}>")
    seen = set()
    for child in element:
        if not shape.text and (child.tail or "").strip():
            line = _text_line(child.tail, child.getnext(), _end_line(child))
            raise error(line, f"unexpected text in <{tag}>")
        if child.tag.startswith(_XINCLUDE):
            raise error(child, "XInclude is not supported")
        if shape.text:
            raise error(child, f"<{tag}> may contain only text, not "
                        f"<{child.tag}>")
        if child.tag not in shape.children:
            allowed = ", ".join(f"<{name}>" for name in shape.children
                                ) or "no elements"
            raise error(child, f"unexpected element <{child.tag}> in "
                        f"<{tag}>; allowed here: {allowed}")
        count, child_shape = shape.children[child.tag]
        if count != _MANY and child.tag in seen:
            raise error(child, f"<{tag}> may contain only one <{child.tag}>")
        seen.add(child.tag)
        check_shape(child, child_shape, error)
    for name, (count, _) in shape.children.items():
        if count == _ONE and name not in seen:
            raise error(element, f"<{tag}> is missing <{name}>")


def check_schema(root, error):
    """Apply the RELAX NG grammar (the formal definition of TDL): to the
    template with its list sections emptied, then to each section."""
    sections = [(child, list(child)) for child in root
                if child.tag in template_xml.LIST_SECTIONS]
    for section, children in sections:
        section[:] = []
    try:
        validate(template_xml.schema(), root, error)
    finally:
        for section, children in sections:
            section[:] = children
    for section, _ in sections:
        check_section(section, error)


def check_section(section, error):
    """Apply the grammar's definition of the list section ``section``."""
    validate(template_xml.schema(template_xml.LIST_SECTIONS[section.tag]),
             section, error)


def validate(schema, element, error):
    """Check ``element`` against ``schema`` (a template_xml.schema)."""
    failed = template_xml.validate(schema, element)
    if failed:
        line, column, message = failed
        raise error(line or element.sourceline,
                    f"does not match the TDL schema: {message}",
                    column=column or None)


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

"""Target content: repositories, packages, files and commands that go into a
target image only (Image Factory's ``target_content.xml``).

The file the ``target_content_file`` option names holds
``<template_includes>`` with ``<include>`` elements. An include's
attributes ``target``, ``os``, ``version`` and ``arch`` say what it is for;
its children are template sections (``<repositories>``, ``<packages>``,
and, beyond Image Factory's two, ``<files>`` and ``<commands>``)::

    <template_includes>
      <include target="openstack" os="Fedora">
        <packages><package name="cloud-init"/></packages>
      </include>
      <include target="vmdk"><packages>...</packages></include>
    </template_includes>

As in Image Factory, one include is used for a build: the first of the most
specific kind that matches, from target+os+version+arch, target+os+version,
target+os, target, to an include with no attributes at all. The base
image's OS plugin applies it when it makes the target image, in a
customization boot of the base image (see
:meth:`novaimagebuilder.pipeline.Pipeline.customize_image`).
"""
import dataclasses
import os

from lxml import etree

from imgfac_nova import template as tdl
from imgfac_nova.template_xml import TemplateError

ROOT = "template_includes"
ATTRIBUTES = ("target", "os", "version", "arch")
#: The attributes an include has, most specific first (Image Factory's order).
_SPECIFICITY = (ATTRIBUTES, ATTRIBUTES[:3], ATTRIBUTES[:2], ATTRIBUTES[:1], ())


@dataclasses.dataclass(frozen=True)
class Include:
    """One ``<include>``: what it is for and what it adds."""
    match: dict
    repositories: list
    packages: list
    files: list
    commands: list
    line: int

    def applies(self, target, template):
        wanted = {"target": target.lower(), "os": template.os.name.lower(),
                  "version": template.os.version.lower(),
                  "arch": template.os.arch.lower()}
        return all(wanted[k] == v.lower() for k, v in self.match.items())

    def empty(self):
        return not (self.repositories or self.packages or self.files or
                    self.commands)


def load(path):
    """The includes of the target content file ``path``; a one-line
    TemplateError (``path:line: ...``) when it is unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(path, None, "cannot read the target content "
                            "file: %s" % (getattr(exc, "strerror", None)
                                          or "not UTF-8 text")) from None
    try:
        root = etree.fromstring(text.encode(), etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError as exc:
        raise TemplateError(path, exc.lineno, "not well-formed XML: %s"
                            % exc.msg) from None
    if root.tag != ROOT:
        raise TemplateError(path, root.sourceline, "the root element "
                            "must be <%s>, not <%s>" % (ROOT, root.tag))
    includes = []
    for element in root:
        if not isinstance(element.tag, str):
            continue  # comments
        if element.tag != "include":
            raise TemplateError(path, element.sourceline, "unexpected "
                                "element <%s> in <%s>; allowed here: "
                                "<include>" % (element.tag, ROOT))
        unknown = sorted(set(element.attrib) - set(ATTRIBUTES))
        if unknown:
            raise TemplateError(path, element.sourceline, "unexpected "
                                "attribute '%s' on <include> (known: %s)"
                                % (unknown[0], ", ".join(ATTRIBUTES)))
        content = tdl.parse_content(element, text, path)
        includes.append(Include(match=dict(element.attrib),
                                line=element.sourceline, **content))
    return includes


def configured_file(conf):
    """The target content file of the configuration, or None."""
    return getattr(conf, "target_content_file", None) or None


def check(conf):
    """Read the configured file now (bad input before anything is
    created); returns its includes ([] when none is configured)."""
    path = configured_file(conf)
    return load(path) if path else []


def for_target(includes, target, template):
    """The :class:`Include` for building ``target`` from a base image of
    ``template``, or None."""
    for attributes in _SPECIFICITY:
        for include in includes:
            if set(include.match) == set(attributes) and include.applies(
                    target, template):
                return include
    return None


def as_template(include, template):
    """A Template carrying only ``include``'s customization, for the OS of
    ``template`` (what the target's customization boot applies)."""
    return dataclasses.replace(
        template, packages=list(include.packages),
        repositories=list(include.repositories), files=list(include.files),
        precommands=[], commands=list(include.commands),
        source=os.fspath(template.source))

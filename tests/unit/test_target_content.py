"""Image Factory's target content file: reading it, and which include a
build of a target uses."""
import pytest

from imgfac_nova import target_content
from imgfac_nova import template as tdl
from imgfac_nova import template_xml

BASE = tdl.parse_template("""<template><name>t</name>
  <os><name>Fedora</name><version>40</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>pw</rootpw></os>
  <packages><package name='base-only'/></packages>
  <commands><command name='base'>true</command></commands>
</template>""")

CONTENT = """<?xml version="1.0"?>
<template_includes>
  <!-- no attributes: any target -->
  <include><packages><package name="any"/></packages></include>
  <include target="openstack">
    <packages><package name="cloud-init"/></packages>
  </include>
  <include target="openstack" os="Fedora">
    <repositories><repository name="extra">
      <url>http://mirror.example.com/extra/</url></repository></repositories>
    <packages><package name="qemu-guest-agent"/></packages>
  </include>
  <include target="openstack" os="Fedora" version="40">
    <packages><package name="f40-agent"/></packages>
    <files><file name="/etc/target">openstack</file></files>
    <commands><command name="mark">touch /etc/openstack-target</command>
    </commands>
  </include>
  <include target="openstack" os="Fedora" version="40" arch="aarch64">
    <packages><package name="arm-only"/></packages>
  </include>
  <include target="vmdk" os="Debian">
    <packages><package name="open-vm-tools"/></packages>
  </include>
</template_includes>
"""


@pytest.fixture
def content_file(tmp_path):
    path = tmp_path / "target_content.xml"
    path.write_text(CONTENT)
    return str(path)


def _names(include):
    return [p.name for p in include.packages]


def test_the_most_specific_matching_include_wins(content_file):
    includes = target_content.load(content_file)
    chosen = target_content.for_target(includes, "openstack", BASE)
    # target+os+version (the arch-specific one is for aarch64)
    assert _names(chosen) == ["f40-agent"]
    assert [f.name for f in chosen.files] == ["/etc/target"]
    assert [c.content for c in chosen.commands] == [
        "touch /etc/openstack-target"]
    assert chosen.line == 13


def test_less_specific_includes_and_the_catch_all(content_file):
    includes = target_content.load(content_file)
    other_version = tdl.parse_template(BASE.xml.replace(
        "<version>40</version>", "<version>41</version>"))
    assert _names(target_content.for_target(
        includes, "OpenStack", other_version)) == ["qemu-guest-agent"]
    debian = tdl.parse_template(BASE.xml.replace("Fedora", "Debian"))
    assert _names(target_content.for_target(
        includes, "openstack", debian)) == ["cloud-init"]
    assert _names(target_content.for_target(includes, "vmdk", debian)) == [
        "open-vm-tools"]
    # vmdk of Fedora: no vmdk include matches, so the one without attributes
    assert _names(target_content.for_target(includes, "vmdk", BASE)) == [
        "any"]


def test_no_matching_include_is_none(tmp_path):
    path = tmp_path / "t.xml"
    path.write_text("<template_includes><include target='ova'>"
                    "<packages><package name='x'/></packages></include>"
                    "</template_includes>")
    assert target_content.for_target(target_content.load(str(path)),
                                     "qcow2", BASE) is None


def test_as_template_keeps_the_os_and_only_the_target_content(content_file):
    include = target_content.for_target(target_content.load(content_file),
                                        "openstack", BASE)
    made = target_content.as_template(include, BASE)
    assert made.os == BASE.os
    assert [p.name for p in made.packages] == ["f40-agent"]
    assert made.precommands == [] and [c.name for c in made.commands] == [
        "mark"]
    assert made.repositories == []


@pytest.mark.parametrize("text,message", [
    ("<template_includes>", ":1: not well-formed XML"),
    ("<includes/>", ":1: the root element must be <template_includes>, "
                    "not <includes>"),
    ("<template_includes>\n<inclde/></template_includes>",
     ":2: unexpected element <inclde> in <template_includes>"),
    ("<template_includes>\n<include target='x' cloud='y'/>"
     "</template_includes>",
     ":2: unexpected attribute 'cloud' on <include>"),
    ("<template_includes><include>\n<services/></include>"
     "</template_includes>",
     ":2: unexpected element <services> in <include>; allowed here: "
     "<repositories>, <packages>, <files>, <commands>"),
    ("<template_includes><include><packages>\n<package/></packages>"
     "</include></template_includes>", ":2: "),
    ("<template_includes><include><commands>\n<command name='c'/>"
     "</commands></include></template_includes>",
     ":2: <command name='c'> is empty"),
])
def test_bad_files_are_one_line_errors_with_file_and_line(tmp_path, text,
                                                          message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(template_xml.TemplateError) as exc:
        target_content.load(str(path))
    assert str(exc.value).startswith(str(path) + message), str(exc.value)
    assert "\n" not in str(exc.value)


def test_an_unreadable_file(tmp_path):
    with pytest.raises(template_xml.TemplateError,
                       match="cannot read the target content file"):
        target_content.load(str(tmp_path / "missing.xml"))


def test_check_without_a_configured_file_is_empty():
    assert target_content.check(None) == []

"""Tests for imgfac_nova.template: TDL parsing, validation and helpers."""

import pathlib
import random
import time

import pytest
from lxml import etree

from imgfac_nova import template_structure
from imgfac_nova import template_xml
from imgfac_nova.template_limits import DEFAULT_LIMITS, Limits
from imgfac_nova.template import load_template, parse_template
from imgfac_nova.template_model import REDACTED, Command, File, Package, Repository
from imgfac_nova.template_xml import TemplateError

HERE = pathlib.Path(__file__).parent
GOOD = HERE / "templates" / "good"
BAD = HERE / "templates" / "bad"
EXAMPLES = HERE.parent.parent / "examples"

MINIMAL = """<template>
  <name>t</name>
  <os>
    <name>Fedora</name>
    <version>40</version>
    <arch>x86_64</arch>
    <install type="url"><url>http://install.example.org/os/</url></install>
  </os>
{extra}</template>
"""


def minimal(extra=""):
    return MINIMAL.format(extra=extra)


def rejection(text, source="<string>"):
    with pytest.raises(TemplateError) as info:
        parse_template(text, source)
    return info.value


def attribute(obj, dotted):
    for part in dotted.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


# ---------------------------------------------------------------- good

GOOD_TEMPLATES = {
    "minimal-url.tdl": {
        "name": "minimal-url",
        "description": None,
        "os.name": "Fedora",
        "os.version": "40",
        "os.arch": "x86_64",
        "os.install.type": "url",
        "os.install.url": "http://install.example.org/fedora/40/os/",
        "os.install.iso": None,
        "os.install.checksum": None,
        "os.rootpw": None,
        "packages": [],
        "repositories": [],
        "files": [],
        "commands": [],
        "precommands": [],
        "disk_size": None,
    },
    "minimal-iso.tdl": {
        "name": "minimal-iso",
        "os.arch": "aarch64",
        "os.install.type": "iso",
        "os.install.iso": "file:///srv/isos/debian-12.iso",
        "os.install.url": None,
        "os.install.checksum": None,
    },
    "iso-checksum.tdl": {
        "os.arch": "s390x",
        "os.install.checksum": ("md5sum",
                                "http://files.example.org/rhel-9.4.iso.md5"),
        "os.install.checksum.type": "md5sum",
    },
    "full.tdl": {
        "description": "Everything TDL can say",
        "os.rootpw": "s3cret-root",
        "os.key": "AAAAA-BBBBB-CCCCC",
        "os.kernelparam": "console=ttyS0 inst.text",
        "os.icicle_extra_command": "rpm -qa --qf '%{NAME}\\n'",
        "packages": [
            Package("httpd"),
            Package("local-tool", repository="internal",
                    file="local-tool-1.0-1.noarch.rpm",
                    args="--nogpgcheck"),
        ],
        "packages.1.line": 22,
        "repositories": [
            Repository("internal", "https://repo.example.org/internal/",
                       signed=True, persisted=False, sslverify=True,
                       clientcert="client-certificate-pem",
                       clientkey="client-key-pem",
                       cacert="ca-certificate-pem"),
            Repository("defaults", "http://repo.example.org/defaults/",
                       signed=False, persisted=True, sslverify=False),
        ],
        "files.0": File("/etc/motd", "raw", "Hello from full"),
        "files.1.type": "raw",
        "files.2.data": b"hello\n",
        "files.3.data": b"",
        "files.4.type": "url",
        "files.4.content": "http://files.example.org/fetched",
        "files.4.data": None,
        "precommands": [Command("pre-one", "raw", "echo pre")],
        "commands": [
            Command("first", "raw", "echo first", position=1),
            Command("second", "base64", "ZWNobyBzZWNvbmQK", position=2),
            Command("third", "url", "http://files.example.org/third.sh",
                    position=3),
        ],
        "commands.1.data": b"echo second\n",
        "commands.0.line": 54,
        "disk_size": 25 * 10**9,
    },
    "lenient-whitespace.tdl": {
        "name": "lenient-whitespace",
        "os.name": "Ubuntu",
        "os.arch": "x86_64",
        "os.install.url": "http://install.example.org/ubuntu/",
        "repositories.0.signed": True,
        "files.0.data": b"This base64 is wrapped over several lines, as the "
                        b"base64 command prints it.\n",
        "commands.0.name": "b",
        "commands.0.position": 1,
        "commands.1.name": "a",
        "disk_size": 512 * 2**20,
    },
    "cdata-and-comments.tdl": {
        "description": "Beschreibung mit Umlauten: äöü — and a dash",
        "os.install.url": "http://install.example.org/debian/",
        "files.0.data": b"<!DOCTYPE html>\n<p>Tom & Jerry</p>",
        "commands.0.content": 'test 1 -lt 2 && echo "<ok>"',
        "disk_size": None,
    },
}


@pytest.mark.parametrize("filename", sorted(GOOD_TEMPLATES))
def test_good_template(filename):
    path = GOOD / filename
    template = load_template(path)
    assert template.source == str(path)
    assert template.xml == path.read_text(encoding="utf-8")
    for dotted, expected in GOOD_TEMPLATES[filename].items():
        assert attribute(template, dotted) == expected, dotted


def test_every_good_file_is_in_the_table():
    assert sorted(p.name for p in GOOD.glob("*.tdl")) == sorted(GOOD_TEMPLATES)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.tdl")),
                         ids=lambda p: p.name)
def test_examples_validate(path):
    template = load_template(path)
    assert template.name and template.summary()


def test_examples_exist():
    names = {p.name for p in EXAMPLES.glob("*.tdl")}
    assert {"fedora-40.tdl", "debian-12.tdl", "ubuntu-24.04-iso.tdl"} <= names


# ---------------------------------------------------------------- bad

# file, line, message, whether the RELAX NG grammar alone rejects it too
EXTRAS = ("<extras> is not supported: files of the build host are not copied "
          "into the install ISO; put what the image needs in <files> or the "
          "install script")
BAD_TEMPLATES = [
    ("syntax-empty.tdl", 1, "XML syntax error: Document is empty", None),
    ("syntax-tag-mismatch.tdl", 6, "XML syntax error: Opening and ending tag "
     "mismatch: version line 6 and versoin", None),
    ("syntax-undefined-entity.tdl", 3,
     "XML syntax error: Entity 'nbsp' not defined", None),
    ("doctype.tdl", 3,
     "DOCTYPE declarations (DTDs, entities) are not allowed", None),
    ("root-not-template.tdl", 2,
     "the root element must be <template>, not <templ>", True),
    ("missing-name.tdl", 2, "<template> is missing <name>", True),
    ("missing-os.tdl", 2, "<template> is missing <os>", True),
    ("duplicate-os.tdl", 12, "<template> may contain only one <os>", True),
    ("unknown-element.tdl", 12, "unexpected element <packges> in <template>; "
     "allowed here: <name>, <description>, <os>, <packages>, <repositories>, "
     "<files>, <precommands>, <commands>, <disk>", True),
    ("unknown-attribute.tdl", 13, "unexpected attribute 'mode' on <file>",
     True),
    ("stray-text.tdl", 13, "unexpected text in <template>", True),
    ("element-in-text.tdl", 3, "<name> may contain only text, not <b>", True),
    ("xinclude.tdl", 12, "XInclude is not supported", True),
    ("version-2.tdl", 2,
     "unsupported TDL version '2.0'; only version 1.0 is known", True),
    ("empty-name.tdl", 3, "<name> in <template> is empty", True),
    ("empty-os-version.tdl", 6, "<version> in <os> is empty", True),
    ("bad-arch.tdl", 7, "unknown architecture 'amd64'; expected one of i386, "
     "x86_64, aarch64, armv7l, ppc64, ppc64le, s390x", True),
    ("rootpw-twice.tdl", 12, "<os> may contain only one <rootpw>", True),
    ("icicle-without-command.tdl", 11, "<icicle> is missing <extra_command>",
     True),
    ("install-without-type.tdl", 8,
     "<install> needs a type attribute, 'url' or 'iso'", True),
    ("install-bad-type.tdl", 8,
     "unknown install type 'pxe'; expected 'url' or 'iso'", True),
    ("url-install-with-iso.tdl", 10,
     "<iso> is not allowed in <install type='url'>", True),
    ("url-install-with-extras.tdl", 10,
     "<extras> is not allowed in <install type='url'>", True),
    ("iso-install-without-iso.tdl", 8, "<install type='iso'> is missing <iso>",
     True),
    ("two-checksums.tdl", 11, "only one checksum is allowed: <md5sum>, "
     "<sha1sum> or <sha256sum>", True),
    ("extras-empty.tdl", 10, EXTRAS, True),
    ("extras-without-source.tdl", 10, EXTRAS, True),
    ("iso-extras.tdl", 11, EXTRAS, False),
    ("rootpw-md5-crypt.tdl", 9, "<rootpw> is an MD5-crypt ($1$) hash, too "
     "weak to protect the root password; give a SHA-512 ($6$) or yescrypt "
     "($y$) hash, or the password (the install script gets its SHA-512 "
     "hash)", False),
    ("package-without-name.tdl", 14,
     "<package> needs a non-empty name attribute", True),
    ("package-two-arguments.tdl", 15,
     "<package> may contain only one <arguments>", True),
    ("repository-without-url.tdl", 13, "<repository> is missing <url>", True),
    ("repository-bad-bool.tdl", 15,
     "<signed> must be yes, no, true or false, not 'maybe'", True),
    ("repository-clientkey-without-cert.tdl", 15,
     "repository 'r' has <clientkey> but no <clientcert>", True),
    ("repository-localhost.tdl", 14, "repository 'r' points at the build host "
     "(localhost); the guest cannot reach it there", False),
    ("repository-loopback-port.tdl", 14, "repository 'r' points at the build "
     "host (127.0.0.2); the guest cannot reach it there", False),
    ("repository-apt-line-ipv6-loopback.tdl", 14, "repository 'r' points at "
     "the build host (::1); the guest cannot reach it there", False),
    ("file-bad-type.tdl", 13, "unknown type 'text' for "
     "<file name='/etc/motd'>; expected raw, base64 or url", True),
    ("file-bad-base64.tdl", 13,
     "content of <file name='/etc/motd'> is not valid base64", True),
    ("file-base64-bad-padding.tdl", 13,
     "content of <file name='/etc/motd'> is not valid base64", False),
    ("file-url-empty.tdl", 13,
     "<file name='/etc/motd'> of type url needs a URL", True),
    ("command-empty.tdl", 13, "<command name='nothing'> is empty", True),
    ("command-base64-empty.tdl", 13, "<command name='nothing'> is empty",
     True),
    ("command-without-name.tdl", 13,
     "<command> needs a non-empty name attribute", True),
    ("command-bad-position.tdl", 13,
     "position 'first' of <command name='a'> must be a whole number", True),
    ("command-mixed-positions.tdl", 14, "<command name='b'> has no position "
     "but others in <commands> do; give every command a position or none",
     False),
    ("command-duplicate-position.tdl", 15, "position 1 is used twice in "
     "<commands> (also by <command name='a'>)", False),
    ("command-position-gap.tdl", 14, "positions in <commands> must run from 1 "
     "to 3 without gaps; <command name='b'> has position 4", False),
    ("command-position-zero.tdl", 13, "positions in <commands> must run from 1 "
     "to 2 without gaps; <command name='a'> has position 0", False),
    ("precommand-position-gap.tdl", 13, "positions in <precommands> must run "
     "from 1 to 2 without gaps; <command name='a'> has position 2", False),
    ("disk-size-bad-unit.tdl", 13, "invalid disk size '1024M': give a whole "
     "number and optionally a unit (B, G, T, KB, MB, GB, TB, ..., KiB, MiB, "
     "GiB, TiB, ...); a bare number means GiB", False),
    ("disk-size-fraction.tdl", 13, "invalid disk size '1.5G': give a whole "
     "number and optionally a unit (B, G, T, KB, MB, GB, TB, ..., KiB, MiB, "
     "GiB, TiB, ...); a bare number means GiB", True),
    ("disk-size-zero.tdl", 13, "disk size must be larger than zero", False),
    ("disk-without-size.tdl", 12, "<disk> is missing <size>", True),
]


@pytest.mark.parametrize("filename,line,message,_",
                         BAD_TEMPLATES, ids=[c[0] for c in BAD_TEMPLATES])
def test_bad_template(filename, line, message, _):
    path = BAD / filename
    with pytest.raises(TemplateError) as info:
        load_template(path)
    error = info.value
    assert str(error) == f"{path}:{line}: {message}"
    assert (error.source, error.line) == (str(path), line)
    assert error.message == message
    assert "\n" not in str(error)


def test_every_bad_file_is_in_the_table():
    assert sorted(p.name for p in BAD.glob("*.tdl")) == sorted(
        case[0] for case in BAD_TEMPLATES)


@pytest.mark.parametrize("filename,schema_rejects", [
    (case[0], case[3]) for case in BAD_TEMPLATES if case[3] is not None])
def test_grammar_agrees_with_the_checks(filename, schema_rejects):
    """The RELAX NG grammar rejects exactly the structural problems."""
    root = etree.fromstring((BAD / filename).read_bytes())
    assert template_xml.schema().validate(root) is not schema_rejects


@pytest.mark.parametrize("filename", sorted(GOOD_TEMPLATES))
def test_grammar_accepts_good_templates(filename):
    parser = etree.XMLParser(remove_comments=True, remove_pis=True)
    root = etree.fromstring((GOOD / filename).read_bytes(), parser)
    assert template_xml.schema().validate(root)


def test_grammar_backstop_reports_line():
    root = etree.fromstring(b"<template>\n<name>x</name>\n<os/>\n</template>")
    with pytest.raises(TemplateError) as info:
        template_structure.check_schema(
            root, lambda line, message, column=None: TemplateError(
                "t.tdl", line, message, column))
    assert str(info.value).startswith("t.tdl:")
    assert "does not match the TDL schema" in str(info.value)


# ---------------------------------------------------------------- files

def test_missing_file(tmp_path):
    path = tmp_path / "nope.tdl"
    error = pytest.raises(TemplateError, load_template, path).value
    assert str(error) == (f"{path}: cannot read template: "
                          "No such file or directory")
    assert error.line is None


def test_directory_instead_of_file(tmp_path):
    error = pytest.raises(TemplateError, load_template, tmp_path).value
    assert str(error) == f"{tmp_path}: cannot read template: Is a directory"


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.tdl"
    path.write_bytes(minimal("  <description>caf\xe9</description>\n")
                     .encode("latin-1"))
    error = pytest.raises(TemplateError, load_template, path).value
    assert str(error) == f"{path}:9: template is not valid UTF-8 text"


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.tdl"
    path.write_bytes(b"\xef\xbb\xbf" + minimal().encode())
    assert load_template(path).name == "t"


def test_encoding_declaration_in_text_is_accepted():
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + minimal(
        "  <description>café</description>\n")
    assert parse_template(text).description == "café"


def test_default_source_name():
    error = rejection(minimal("  <bogus/>\n"))
    assert str(error).startswith("<string>:9: unexpected element <bogus>")


# ---------------------------------------------------------------- hostile

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE template [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
]>
<template><name>&g;</name></template>
"""

HOSTILE = {
    "billion laughs": (BILLION_LAUGHS, 2),
    "external entity": ('<!DOCTYPE template [<!ENTITY x SYSTEM '
                        '"file:///etc/passwd">]>\n<template><name>&x;</name>'
                        '</template>', 1),
    "external DTD": ('<?xml version="1.0"?>\n\n<!DOCTYPE template SYSTEM '
                     '"http://127.0.0.1:9/tdl.dtd">\n<template/>', 3),
    "parameter entity": ('<!-- c\n -->\n<!DOCTYPE template [<!ENTITY % p '
                         'SYSTEM "file:///etc/passwd"> %p;]>\n<template/>', 3),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_doctype_fails_fast(name):
    text, line = HOSTILE[name]
    started = time.monotonic()
    error = rejection(text, "evil.tdl")
    assert time.monotonic() - started < 1
    assert str(error) == (f"evil.tdl:{line}: DOCTYPE declarations (DTDs, "
                          "entities) are not allowed")


#: Small limits, so the limit tests stay fast.
SMALL = Limits(max_bytes=1024 * 1024, max_elements=10000)


def test_default_limits_are_generous():
    assert DEFAULT_LIMITS.max_bytes >= 64 * 2**20
    assert DEFAULT_LIMITS.max_elements >= 200000


def big_template(path, files, size):
    """A template with ``files`` inline files of ``size`` bytes each."""
    body = ("x" * 63 + "\n") * (size // 64)
    with open(path, "w") as out:
        out.write(minimal().replace("</template>", "  <files>\n"))
        for i in range(files):
            out.write(f'    <file name="/etc/big/f{i}">{body}</file>\n')
        out.write("  </files>\n</template>\n")
    return path


def test_twenty_megabyte_template_with_inline_files_validates(tmp_path):
    path = big_template(tmp_path / "big.tdl", 20000, 1024)
    assert path.stat().st_size > 20 * 10**6
    template = load_template(path)
    assert len(template.files) == 20000
    assert template.files[19999].name == "/etc/big/f19999"


def test_one_inline_file_larger_than_libxml2s_text_cap(tmp_path):
    path = big_template(tmp_path / "one.tdl", 1, 12 * 2**20)
    assert load_template(path).files[0].data.startswith(b"x" * 63)


def test_an_invalid_item_in_a_big_section_is_found_with_its_line(tmp_path):
    path = big_template(tmp_path / "big.tdl", 3000, 64)
    text = path.read_text().replace('<file name="/etc/big/f2999">',
                                    '<file name="/etc/big/f2999" type="x">')
    error = rejection(text, "big.tdl")
    line = text[:text.index('type="x"')].count("\n") + 1
    assert str(error).startswith(f"big.tdl:{line}: ")


def test_two_hundred_thousand_elements_validate():
    packages = "<package name='p'/>\n" * (DEFAULT_LIMITS.max_elements - 10)
    template = parse_template(minimal(f"<packages>\n{packages}</packages>\n"))
    assert len(template.packages) == DEFAULT_LIMITS.max_elements - 10


def test_two_hundred_mebibyte_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.tdl"
    with open(path, "wb") as out:
        out.write(minimal().encode())
        out.truncate(200 * 2**20)
    error = pytest.raises(TemplateError, load_template, path).value
    assert str(error) == (f"{path}: template is larger than 64 MiB "
                          "(67108864 bytes) (the max_template_bytes option)")


def test_huge_file_fails_fast(tmp_path):
    path = tmp_path / "huge.tdl"
    filler = "  <description>" + "x" * (2 * SMALL.max_bytes) + \
        "</description>\n"
    path.write_text(minimal(filler))
    started = time.monotonic()
    error = pytest.raises(TemplateError, load_template, path, SMALL).value
    assert time.monotonic() - started < 1
    assert str(error) == (f"{path}: template is larger than 1 MiB (1048576 "
                          "bytes) (the max_template_bytes option)")


def test_huge_text_fails_fast():
    text = minimal("<!--" + "x" * SMALL.max_bytes + "-->")
    error = pytest.raises(TemplateError, parse_template, text, "<string>",
                          SMALL).value
    assert str(error).startswith("<string>: template is larger than 1 MiB")


def test_text_just_under_the_limit_is_parsed():
    text = minimal("  <!-- {} -->\n")
    text = text.replace("{}", "x" * (SMALL.max_bytes - len(text) - 2))
    assert len(text.encode()) <= SMALL.max_bytes
    assert parse_template(text, limits=SMALL).name == "t"


def test_too_many_elements_fail_fast():
    limit = SMALL.max_elements
    packages = "<package name='p'/>\n" * (SMALL.max_bytes // 25)
    text = minimal(f"<packages>\n{packages}</packages>\n")
    assert len(text) < SMALL.max_bytes
    started = time.monotonic()
    error = pytest.raises(TemplateError, parse_template, text, "<string>",
                          SMALL).value
    assert time.monotonic() - started < 1
    # Eight elements come before <packages> on line 9, so package k is
    # element 9 + k on line 9 + k: the first one over the limit is on the
    # line numbered like it.
    assert str(error) == (f"<string>:{limit + 1}: template has more than "
                          f"{limit} elements (the max_template_elements "
                          "option)")


def test_deep_nesting_is_refused():
    deep = "<a>" * 100000 + "</a>" * 100000
    error = rejection(minimal(deep))
    assert str(error).startswith("<string>:9: XML syntax error: Excessive "
                                 "depth in document")
    assert "XML_PARSE_HUGE" not in str(error)


def test_no_network_for_external_dtd_without_doctype_check(monkeypatch):
    """Even if the DOCTYPE scan missed something, the parser stays offline."""
    monkeypatch.setattr(template_xml, "_doctype_line", lambda text: None)
    error = rejection('<!DOCTYPE template SYSTEM "http://127.0.0.1:9/x">\n'
                      + minimal())
    assert str(error) == ("<string>:1: DOCTYPE declarations (DTDs, entities) "
                          "are not allowed")


def test_element_inside_an_empty_element():
    text = (BAD / "iso-extras.tdl").read_text().replace(
        'destination="ks.cfg"/>', 'destination="ks.cfg"><x/></file>')
    error = rejection(text)
    assert str(error) == ("<string>:13: unexpected element <x> in <file>; "
                          "allowed here: no elements")


def test_doctype_word_inside_content_is_fine():
    template = parse_template(minimal(
        "  <files><file name='/x'>&lt;!DOCTYPE html&gt;</file></files>\n"))
    assert template.files[0].data == b"<!DOCTYPE html>"


def test_mutated_templates_fail_with_one_line():
    """Random damage to a good template never escapes as another error."""
    source = (GOOD / "full.tdl").read_text()
    rng = random.Random(4242)
    rejected = 0
    for _ in range(400):
        chars = list(source)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            action = rng.choice(("delete", "insert", "swap"))
            if action == "delete":
                del chars[at]
            elif action == "insert":
                chars.insert(at, rng.choice("<>&/='\" x\n0-"))
            else:
                other = rng.randrange(len(chars))
                chars[at], chars[other] = chars[other], chars[at]
        try:
            parse_template("".join(chars), "m.tdl")
        except TemplateError as exc:
            rejected += 1
            assert "\n" not in str(exc)
            assert str(exc).startswith("m.tdl:")
    assert rejected > 200


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("size,expected", [
    ("10", 10 * 2**30),
    ("10G", 10 * 2**30),
    ("10g", 10 * 2**30),
    ("1T", 2**40),
    ("10GB", 10 * 10**9),
    ("10 GB", 10 * 10**9),
    ("10GiB", 10 * 2**30),
    ("10gib", 10 * 2**30),
    ("512MiB", 512 * 2**20),
    ("1024MB", 1024 * 10**6),
    ("10000000 B", 10**7),
    ("3EiB", 3 * 2**60),
    ("1YB", 10**24),
    ("  20  ", 20 * 2**30),
    ("", None),
])
def test_disk_sizes(size, expected):
    extra = f"  <disk><size>{size}</size></disk>\n"
    assert parse_template(minimal(extra)).disk_size == expected


def test_no_disk_means_default_size():
    assert parse_template(minimal()).disk_size is None


@pytest.mark.parametrize("size", ["1024M", "10E", "T10", "10Gi", "-1",
                                  "1.5G", "10 G B", "G", "0", "0GB"])
def test_bad_disk_sizes(size):
    error = rejection(minimal(f"  <disk>\n    <size>{size}</size>\n"
                              "  </disk>\n"))
    assert error.line == 10
    assert "disk size" in error.message


@pytest.mark.parametrize("value,expected", [
    ("yes", True), ("YES", True), ("True", True), ("true", True),
    ("no", False), ("No", False), ("FALSE", False), (" false ", False),
])
def test_repository_booleans(value, expected):
    extra = (f"  <repositories><repository name='r'><url>http://r.example/"
             f"</url><sslverify>{value}</sslverify></repository>"
             "</repositories>\n")
    repository = parse_template(minimal(extra)).repositories[0]
    assert repository.sslverify is expected
    assert (repository.signed, repository.persisted) == (False, True)


@pytest.mark.parametrize("url", [
    "http://LOCALHOST/r", "http://localhost.localdomain/r",
    "http://127.0.0.1/r", "http://127.1.2.3:8080/r", "https://[::1]/r",
    "http://0.0.0.0/r", "http://user:pw@localhost/r",
    "deb http://localhost/debian bookworm main", "http://foo.localhost/r",
])
def test_repositories_on_the_build_host_are_refused(url):
    extra = (f"  <repositories><repository name='r'><url>{url}</url>"
             "</repository></repositories>\n")
    error = rejection(minimal(extra))
    assert error.line == 9
    assert "points at the build host" in error.message
    assert "pw" not in error.message


@pytest.mark.parametrize("url", [
    "http://10.0.2.2:8090/repo/", "http://repo.example.org/",
    "deb http://192.0.2.10/debian bookworm main", "http://localhost-mirror/",
])
def test_repositories_elsewhere_are_fine(url):
    extra = (f"  <repositories><repository name='r'><url>{url}</url>"
             "</repository></repositories>\n")
    assert parse_template(minimal(extra)).repositories[0].url == url


def test_install_url_on_localhost_is_fine():
    """The build host fetches install media itself; only guests cannot."""
    text = minimal().replace("install.example.org", "127.0.0.1:8090")
    assert parse_template(text).os.install.url == "http://127.0.0.1:8090/os/"


# ---------------------------------------------------------------- content

def test_base64_and_raw_data():
    extra = """  <files>
    <file name="/a" type="base64">aGVsbG8K</file>
    <file name="/b" type="base64">
      aGVs
      bG8K
    </file>
    <file name="/c">  plain text  </file>
    <file name="/d" type="url">http://files.example.org/d</file>
    <file name="/e" type="base64"/>
  </files>
"""
    files = parse_template(minimal(extra)).files
    assert [f.data for f in files] == [b"hello\n", b"hello\n", b"plain text",
                                       None, b""]
    assert files[1].content.split() == ["aGVs", "bG8K"]


@pytest.mark.parametrize("content", ["aGVsbG8", "aGVsbG8K=a", "==",
                                     "aGVs bG8", "aGVsbG8K-", "ä"])
def test_invalid_base64_is_refused(content):
    extra = (f"  <commands><command name='c' type='base64'>{content}"
             "</command></commands>\n")
    error = rejection(minimal(extra))
    assert str(error) == ("<string>:9: content of <command name='c'> "
                          "is not valid base64")


def test_commands_in_document_order_without_positions():
    extra = """  <commands>
    <command name="z">echo z</command>
    <command name="a">echo a</command>
    <command name="m">echo m</command>
  </commands>
"""
    commands = parse_template(minimal(extra)).commands
    assert [c.name for c in commands] == ["z", "a", "m"]
    assert [c.position for c in commands] == [None, None, None]
    assert [c.line for c in commands] == [10, 11, 12]


def test_commands_sorted_by_position():
    extra = """  <precommands>
    <command name="p2" position="2">echo p2</command>
    <command name="p1" position="1">echo p1</command>
  </precommands>
  <commands>
    <command name="c3" position="3">echo 3</command>
    <command name="c1" position="1">echo 1</command>
    <command name="c2" position="2">echo 2</command>
  </commands>
"""
    template = parse_template(minimal(extra))
    assert [c.name for c in template.precommands] == ["p1", "p2"]
    assert [c.name for c in template.commands] == ["c1", "c2", "c3"]
    assert [c.position for c in template.commands] == [1, 2, 3]


def test_positions_are_checked_per_section():
    extra = """  <precommands>
    <command name="p" position="1">echo p</command>
  </precommands>
  <commands>
    <command name="c">echo c</command>
  </commands>
"""
    template = parse_template(minimal(extra))
    assert (template.precommands[0].position, template.commands[0].position) \
        == (1, None)


# ---------------------------------------------------------------- output

def test_summary():
    template = load_template(GOOD / "full.tdl")
    assert template.summary() == [
        "Template: full",
        "Description: Everything TDL can say",
        "OS: Fedora 40 (x86_64)",
        "Install: from the install tree "
        "http://***@install.example.org/fedora/40/os/",
        "Customization: 2 repositories, 2 packages, 5 files, 1 precommand, "
        "3 commands",
        "Disk: 25 GB (25000000000 bytes)",
    ]


def test_summary_of_iso_install_and_defaults():
    template = load_template(GOOD / "iso-checksum.tdl")
    assert template.summary() == [
        "Template: iso-checksum",
        "OS: RHEL-9 4 (s390x)",
        "Install: from the ISO http://files.example.org/rhel-9.4.iso "
        "(verified with md5sum)",
        "Customization: 0 repositories, 0 packages, 0 files, 0 precommands, "
        "0 commands",
        "Disk: default size",
    ]


def test_summary_shortens_long_description():
    text = minimal("  <description>" + "word " * 40 + "\nsecond line"
                   "</description>\n")
    line = parse_template(text).summary()[1]
    assert line.startswith("Description: word word")
    assert line.endswith("...") and len(line) == len("Description: ") + 72


@pytest.mark.parametrize("size,shown", [
    ("10", "10 GiB (10737418240 bytes)"),
    ("1T", "1 TiB (1099511627776 bytes)"),
    ("300MiB", "300 MiB (314572800 bytes)"),
    ("2TB", "2 TB (2000000000000 bytes)"),
    ("1500 MB", "1500 MB (1500000000 bytes)"),
    ("12345B", "12345 bytes"),
])
def test_summary_disk_size(size, shown):
    text = minimal(f"  <disk><size>{size}</size></disk>\n")
    assert parse_template(text).summary()[-1] == f"Disk: {shown}"


def test_redacted_xml_hides_secrets():
    template = load_template(GOOD / "full.tdl")
    redacted = template.redacted_xml()
    for secret in ("s3cret-root", "AAAAA-BBBBB-CCCCC", "client-key-pem",
                   "mirror:secret@"):
        assert secret in template.xml
        assert secret not in redacted
    again = parse_template(redacted)
    assert again.os.rootpw == again.os.key == REDACTED
    assert again.repositories[0].clientkey == REDACTED
    assert again.os.install.url == (
        "http://***@install.example.org/fedora/40/os/")
    # everything that is not secret is kept
    assert again.repositories[0].clientcert == "client-certificate-pem"
    assert again.commands == template.commands
    assert again.files == template.files
    assert again.packages == template.packages
    assert again.disk_size == template.disk_size
    assert "<!--" not in redacted


def test_redacted_xml_keeps_templates_without_secrets():
    template = parse_template(minimal("  <files><file name='/x'>"
                                      "curl http://u:pw@h.example/x"
                                      "</file></files>\n"))
    redacted = template.redacted_xml()
    assert "curl http://***@h.example/x" in redacted
    assert "<rootpw>" not in redacted
    assert parse_template(redacted).name == "t"


def test_repr_does_not_show_secrets():
    template = load_template(GOOD / "full.tdl")
    shown = repr(template)
    assert "s3cret-root" not in shown and "client-key-pem" not in shown
    assert "AAAAA-BBBBB" not in shown


def test_template_error_shapes():
    assert str(TemplateError("f.tdl", 3, "bad\nthing")) == "f.tdl:3: bad thing"
    assert str(TemplateError("f.tdl", None, "gone")) == "f.tdl: gone"
    assert isinstance(TemplateError("f", 1, "x"), ValueError)


def test_long_values_are_shortened_in_messages():
    error = rejection(minimal("").replace("x86_64", "y" * 500))
    assert "'" + "y" * 37 + "...'" in error.message
    assert len(str(error)) < 200


@pytest.mark.parametrize("rootpw", [
    "$6$rounds=100000$salt$" + "a" * 86, "$y$j9T$salt$" + "b" * 43,
    "plain pass"])
def test_strong_root_password_hashes_and_plain_passwords_accepted(rootpw):
    text = minimal().replace("  </os>",
                             f"    <rootpw>{rootpw}</rootpw>\n  </os>")
    assert parse_template(text).os.rootpw == rootpw

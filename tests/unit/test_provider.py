"""Providers and credentials as Image Factory wrote them, the openstack
target's Glance properties, and bad input to the cloud verbs (nothing is
created)."""
import io
import json
import os
import subprocess
import sys
import types

import pytest

from imgfac_nova.plugins import openstack
from imgfac_nova.plugins import provider
from imgfac_nova.plugins import provider_access
from novaimagebuilder import errors
from novaimagebuilder.images import streams

CREDENTIALS = """<?xml version="1.0"?>
<provider_credentials>
  <openstack_credentials>
    <username>alice</username>
    <tenant>research</tenant>
    <password>s3cret-pw</password>
    <strategy>keystone</strategy>
    <auth_url>http://keystone.example:5000/v2.0</auth_url>
  </openstack_credentials>
</provider_credentials>
"""


def test_cloud_provider():
    parsed = provider_access.parse_provider("@mycloud")
    assert parsed.cloud == "mycloud" and parsed.redacted() == "@mycloud"
    with pytest.raises(provider_access.ProviderError, match="names no cloud"):
        provider_access.parse_provider("@")


def test_image_factory_provider_definition(tmp_path):
    text = json.dumps({"glance-host": "glance.example", "glance-port": "9393",
                       "is_public": True, "container_format": "bare",
                       "min_disk": 10, "min_ram": 512})
    parsed = provider_access.parse_provider(text)
    assert parsed.endpoint == "http://glance.example:9393"
    assert parsed.visibility == "public"
    assert json.loads(parsed.redacted()) == dict(json.loads(text),
                                                 **{"glance-port": 9393})
    path = tmp_path / "provider.json"
    path.write_text(json.dumps({"auth_url": "http://k:5000/v3",
                                "visibility": "shared"}))
    from_file = provider_access.parse_provider(str(path))
    assert from_file.endpoint is None and from_file.visibility == "shared"
    assert provider_access.parse_provider(json.dumps(
        {"glance-host": "g"})).endpoint == "http://g:9292"


@pytest.mark.parametrize("text,message", [
    ("mycloud", "the provider definition is not JSON (line 1: Expecting "
                "value); give @CLOUD or an Image Factory provider "
                "definition"),
    ("[1]", "the provider definition must be a JSON object"),
    ('{"glance-host": "g", "colour": 1}', "the provider definition has "
     "unknown keys colour (known: "),
    ('{"is_public": true}', "the provider definition needs glance-host or "
     "auth_url"),
    ('{"glance-host": "g", "min_ram": "lots"}', "the provider definition: "
     "min_ram must be a whole number, not 'lots'"),
    ('{"glance-host": "g", "glance-port": -1}', "the provider definition: "
     "glance-port must be a whole number, not -1"),
])
def test_bad_provider_definitions(text, message):
    with pytest.raises(provider_access.ProviderError) as exc:
        provider_access.parse_provider(text)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_image_factory_credentials():
    assert provider_access.parse_credentials(CREDENTIALS) == {
        "username": "alice", "password": "s3cret-pw",
        "project_name": "research",
        "auth_url": "http://keystone.example:5000/v2.0"}
    v3 = CREDENTIALS.replace(
        "<strategy>keystone</strategy>",
        "<user_domain_name>Users</user_domain_name>"
        "<project_domain_id>d42</project_domain_id>")
    options = provider_access.parse_credentials(v3)
    assert options["user_domain_name"] == "Users"
    assert options["project_domain_id"] == "d42"


@pytest.mark.parametrize("text,message", [
    (CREDENTIALS.replace("provider_credentials", "credentials"),
     "the credentials XML must have the root element <provider_credentials>, "
     "not <credentials>"),
    (CREDENTIALS.replace("openstack_credentials", "ec2_credentials"),
     "the credentials XML has no <openstack_credentials> element"),
    (CREDENTIALS.replace("<password>s3cret-pw</password>", ""),
     "the credentials XML has no <password>"),
    (CREDENTIALS.replace("</password>", "</passwd>"),
     "the credentials are not XML (line 6)"),
    (CREDENTIALS.replace("<strategy>", "<colour>s3cret-pw</colour><strategy>"),
     "unknown element <colour> in <openstack_credentials>"),
])
def test_bad_credentials_never_quote_the_secret(text, message):
    with pytest.raises(provider_access.ProviderError) as exc:
        provider_access.parse_credentials(text)
    assert str(exc.value).startswith(message)
    assert "s3cret" not in str(exc.value)


def test_secret_keys_are_not_kept():
    parsed = provider_access.Provider(definition={"auth_url": "http://k",
                                                  "password": "x", "name": "n"})
    assert json.loads(parsed.redacted()) == {"auth_url": "http://k",
                                             "name": "n"}


def test_hashing_reader_hashes_counts_and_stops_on_cancel():
    import hashlib
    import threading
    data = os.urandom(3 * streams.CHUNK + 5)
    seen = []
    cancel = threading.Event()
    reader = streams.HashingReader(io.BytesIO(data), len(data),
                                   progress=lambda p, n: seen.append((p, n)),
                                   cancel=cancel)
    chunks = iter(lambda: reader.read(streams.CHUNK), b"")
    assert b"".join(chunks) == data
    assert reader.digest.hexdigest() == hashlib.sha512(data).hexdigest()
    assert seen[-1] == (100, len(data)) and seen == sorted(seen)
    cancel.set()
    with pytest.raises(errors.Cancelled):
        reader.read(10)


ICICLE = """<icicle><packages>
<package name="openssh-server_9.2p1-2_amd64"/>{agent}
</packages></icicle>"""


class _Template:
    name = "tiny"

    class os:
        name, version, arch = "Debian", "12", "x86_64"


def test_glance_properties_for_nova():
    parameters = {"hw_disk_bus": "virtio", "hw_vif_model": "e1000"}
    without = openstack.glance_properties(
        _Template, ICICLE.format(agent=""), parameters)
    assert without.pop("image_build_date")
    assert without == {"os_distro": "debian", "os_version": "12",
                       "os_type": "linux", "architecture": "x86_64",
                       "hw_disk_bus": "virtio", "hw_vif_model": "e1000",
                       "image_original_user": "none",
                       "image_source": "private",
                       "image_description": "Debian 12",
                       "replace_frequency": "never",
                       "provided_until": "none", "uuid_validity": "none",
                       "imgfac_template": "tiny"}
    with_agent = openstack.glance_properties(_Template, ICICLE.format(
        agent='<package name="qemu-guest-agent_7.2_amd64"/>'), parameters)
    assert with_agent["hw_qemu_guest_agent"] == "yes"
    assert with_agent["os_require_quiesce"] == "yes"


def test_plugins_verb_lists_every_target(config_file):
    result = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config_file,
         "--output", "json", "plugins"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    targets = {t for p in json.loads(result.stdout) if p["type"] == "cloud"
               for t in p["targets"]}
    assert {"qcow2", "raw", "vmdk", "vhd", "vhdx", "ova", "openstack",
            "openstack-kvm"} <= targets


# -- bad input to the cloud verbs: one line, exit 2, nothing created -------------

TEMPLATE = """<template><name>tiny</name><os><name>TestOS</name>
<version>1</version><arch>x86_64</arch>
<install type='url'><url>http://example.com/tree/</url></install></os>
<description>tiny</description></template>"""


def _cli(env, config, *args):
    return subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config,
         "--output", "json", *args], capture_output=True, text=True, env=env)


@pytest.fixture
def base_id(cli_env, config_file, tmp_path):
    template = tmp_path / "tiny.tdl"
    template.write_text(TEMPLATE)
    result = _cli(cli_env, config_file, "base_image", str(template))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["identifier"]


def _errors(stderr):
    """stderr without the warning about the test site's broken plugin."""
    return [line for line in stderr.strip().splitlines()
            if "Plugin missing in imgfac_nova.os_plugins" not in line]


def _store(tmp_path):
    return sorted(os.listdir(tmp_path / "store"))


@pytest.mark.parametrize("args,message", [
    (("target_image", "--id", "{base}", "vmdk5"),
     "no cloud plugin makes 'vmdk5' images (known targets: "),
    (("target_image", "--id", "{base}", "--parameter", "in_cloud", "true",
      "openstack"),
     "in_cloud needs a base image built in Nova; base image "),
    (("provider_image", "openstack", "not json", "-", "--id", "{base}"),
     "the provider definition is not JSON (line 1: Expecting value)"),
    (("provider_image", "openstack", '{"auth_url": "http://127.0.0.1:9"}',
      "{wrongroot}", "--id", "{base}"),
     "the credentials XML must have the root element <provider_credentials>"),
    (("provider_image", "openstack", "@imgfac-nova-no-such-cloud", "-",
      "--id", "{base}"),
     "cannot use the cloud imgfac-nova-no-such-cloud: "),
    (("provider_image", "openstack", '{"auth_url": "http://127.0.0.1:9/v3"}',
      "{creds}", "--id", "{base}"),
     "the provider http://127.0.0.1:9/v3: cannot reach the cloud: "),
])
def test_bad_input_creates_nothing(cli_env, config_file, tmp_path, base_id,
                                   args, message):
    wrong = tmp_path / "wrong.xml"
    wrong.write_text(CREDENTIALS.replace("provider_credentials", "creds"))
    creds = tmp_path / "creds.xml"  # no auth_url: the provider's is used
    creds.write_text(CREDENTIALS.replace(
        "<auth_url>http://keystone.example:5000/v2.0</auth_url>", ""))
    before = _store(tmp_path)
    args = [a.replace("{base}", base_id).replace("{wrongroot}", str(wrong))
            .replace("{creds}", str(creds)) for a in args]
    result = _cli(cli_env, config_file, *args)
    assert result.returncode == 2, result.stderr
    lines = _errors(result.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("imgfac-nova: error: " + message), lines[0]
    assert "s3cret" not in result.stderr
    assert _store(tmp_path) == before


def test_snapshot_is_refused_by_plugins_without_it(
        cli_env, config_file, tmp_path):
    template = tmp_path / "tiny.tdl"
    template.write_text(TEMPLATE)
    result = _cli(cli_env, config_file, "provider_image", "qcow2",
                  "@somecloud", "-", "--template", str(template),
                  "--snapshot")
    assert result.returncode == 2
    assert _errors(result.stderr) == [
        "imgfac-nova: error: the formats plugin cannot build on a provider "
        "(--snapshot); build the image, then push it"]
    assert not (tmp_path / "store").exists() or _store(tmp_path) == []


def test_base_not_complete_is_bad_input(cli_env, config_file, tmp_path):
    template = tmp_path / "tiny.tdl"
    template.write_text(TEMPLATE)
    failed = _cli(cli_env, config_file, "base_image", "--parameter",
                  "fail_at", "0", str(template))
    assert failed.returncode == 1
    base = json.loads(failed.stdout)["identifier"]
    before = _store(tmp_path)
    result = _cli(cli_env, config_file, "target_image", "--id", base, "vmdk")
    assert result.returncode == 2
    assert _errors(result.stderr) == [
        "imgfac-nova: error: image %s is FAILED, not COMPLETE" % base]
    assert _store(tmp_path) == before


@pytest.mark.parametrize("size,refused", [
    (0, None), (9 * 1024 ** 3, None),
    (10 * 1024 ** 3 + 1, "the push's upload timeout (1920 s for 10 GiB)")])
def test_a_bare_tokens_check_scales_with_the_push_size(monkeypatch, size,
                                                       refused):
    """As the push's own wait: upload_timeout (600 s) plus
    upload_timeout_per_gib (120 s) for each GiB begun, against a token
    with 30 min (1800 s) left."""
    import datetime
    from keystoneauth1 import access
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    token = v3.Token("http://keystone:5000/v3", "tok", project_id="p")
    token.auth_ref = access.create(body={"token": {
        "expires_at": (datetime.datetime.now(datetime.timezone.utc) +
                       datetime.timedelta(minutes=30, seconds=30)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"),
        "methods": ["token"], "user": {"id": "u", "name": "u"}}},
        auth_token="tok")
    monkeypatch.setattr(provider_access, "connect",
                        lambda *args: provider_access.Connection(
                            None, "u/p", "cloud", session.Session(auth=token)))
    plugin = openstack.OpenStack()
    parameters = {"upload_timeout": 600, "upload_timeout_per_gib": 120}
    if refused is None:
        assert plugin.check_provider("@c", None, parameters, size) == "@c"
        return
    with pytest.raises(errors.BuildError) as error:
        plugin.check_provider("@c", None, parameters, size)
    assert "the token expires in 30 min, before %s could end" % refused \
        in str(error.value)


def test_the_push_size_known_before_the_push(tmp_path):
    from imgfac_nova import build
    from imgfac_nova import images
    data = tmp_path / "target.body"
    data.write_bytes(b"x" * 4096)
    target = images.ImageRecord(type=images.TARGET_IMAGE, data=str(data),
                                properties={"min_disk": 20})
    assert build.push_size(target) == 4096
    target.data = None
    assert build.push_size(target) == 20 * 1024 ** 3
    assert build.push_size(images.ImageRecord(type=images.BASE_IMAGE)) == 0
    template = types.SimpleNamespace(disk_size=6 * 1024 ** 3)
    assert build.push_size(None, template) == 6 * 1024 ** 3
    assert build.push_size(None, types.SimpleNamespace(disk_size=None)) == 0
    assert build.push_size(None) == 0


@pytest.mark.parametrize("where,auth,same", [
    ({"cloud": "c", "region": None, "interface": None}, None, True),
    ({"cloud": "c"}, object(), False),  # an API caller's
    ({"cloud": "d"}, None, False),
    ({"cloud": "c", "region": "RegionTwo"}, None, False),
    ({}, None, False)])
def test_a_copy_within_one_clouds_yaml_entry_reads_with_its_connection(
        where, auth, same):
    from imgfac_nova import images
    target = images.ImageRecord(type=images.TARGET_IMAGE,
                                properties={"glance_cloud": where})
    assert provider._same_entry(provider_access.parse_provider("@c"), target,
                                auth) is same

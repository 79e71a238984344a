"""provider_image --snapshot (Image Factory's snapshot build): the openstack
plugin has the Nova OS plugin build straight in the provider's cloud, here
the test cloud reached through Image Factory's provider JSON and
credentials XML, with no cloud configured for the command itself."""
import json
import os

import pytest
import yaml
from lxml import etree

from tests.functional import builds

KEYSTONE = "http://127.0.0.1:5000/v3"


@pytest.fixture
def env(test_cloud):
    """No OS_CLOUD: the build must reach the cloud with the credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = builds.REPO
    return env


@pytest.fixture
def credentials(test_cloud, tmp_path):
    """Image Factory's credentials XML of the test cloud's user imgfac."""
    with open(test_cloud.clouds_yaml) as handle:
        auth = yaml.safe_load(handle)["clouds"]["imgfac-test"]["auth"]
    path = tmp_path / "credentials.xml"
    path.write_text(
        "<provider_credentials><openstack_credentials>"
        "<username>%s</username><password>%s</password>"
        "<tenant>%s</tenant><auth_url>%s</auth_url>"
        "</openstack_credentials></provider_credentials>"
        % (auth["username"], auth["password"], auth["project_name"],
           KEYSTONE))
    return str(path), auth["password"]


def _snapshot(setup, env, credentials, *params):
    """Run the snapshot build; ``(result, the template's unique name)``."""
    config, _, tmp = setup
    template = builds.write_template(tmp)
    with open(template) as handle:
        name = etree.parse(handle).findtext("name")
    return builds.imgfac(
        config, "provider_image", "openstack",
        json.dumps({"auth_url": KEYSTONE}), credentials,
        "--template", template, "--snapshot",
        *builds.with_install_script(params, tmp), env=env,
        timeout=3600), name


def _made_for(conn, name):
    """Glance images of the template ``name`` (others' builds share the
    project, so not all of its images)."""
    return [i.id for i in conn.image.images()
            if i.properties.get("imgfac_template") == name]


def test_a_snapshot_build_with_a_bad_flavor_creates_nothing(
        setup, env, credentials, conn):
    _, store, _ = setup
    params = list(builds.NOVA_PARAMS)
    params[params.index("flavor") + 1] = "no-such-flavor"
    result, name = _snapshot(setup, env, credentials[0], *params)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if "error" in line.lower()]
    assert len(lines) == 1 and "no-such-flavor" in lines[0], result.stderr
    assert credentials[1] not in result.stderr
    assert not os.path.exists(store) or os.listdir(store) == []
    assert _made_for(conn, name) == []


@pytest.mark.slow  # a whole install in the test cloud
def test_snapshot_build_is_the_provider_image(setup, env, credentials, conn):
    config, store, _ = setup
    result, name = _snapshot(setup, env, credentials[0], *builds.NOVA_PARAMS)
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    assert image["type"] == "ProviderImage"
    assert image["status"] == "COMPLETE", image["status_detail"]
    glance = conn.image.get_image(image["identifier_on_provider"])
    try:
        assert glance.status == "active"
        assert glance.owner == conn.current_project_id
        assert image["provider_account_identifier"] == "imgfac/imgfac"
        assert image["provider"] == json.dumps({"auth_url": KEYSTONE})
        assert "hello" in image["icicle"]
        for name in os.listdir(store):
            with open(os.path.join(store, name), errors="replace") as f:
                assert credentials[1] not in f.read(), name
        builds.delete(config, image, env, conn, "--credentials",
                      credentials[0])
        assert conn.image.find_image(glance.id) is None
        assert _made_for(conn, name) == []
    finally:
        conn.image.delete_image(glance.id, ignore_missing=True)

"""What the test cloud refuses, said in one line: a flavor no compute host
can place, and a quota too small for a build (checked before anything is
made), in a project made for these tests (the shared project's quotas stay
as they are)."""
import os
import time
import uuid

import pytest
import yaml

from tests.functional import builds

#: More RAM than the test cloud's compute host has (16 GiB), less than the
#: project's RAM quota: Nova accepts the server, the scheduler finds no host.
UNPLACEABLE_RAM = 40000


@pytest.fixture
def unplaceable_flavor(admin_conn, conn):
    """A private flavor of the imgfac project that no host can place."""
    flavor = admin_conn.compute.create_flavor(
        name="imgfac-ft-huge-" + uuid.uuid4().hex[:6], ram=UNPLACEABLE_RAM,
        vcpus=1, disk=4, is_public=False)
    admin_conn.compute.flavor_add_tenant_access(flavor.id,
                                                conn.current_project_id)
    yield flavor
    admin_conn.compute.delete_flavor(flavor.id, ignore_missing=True)


def test_unplaceable_flavor_fails_in_one_line(cloud_env, setup, conn,
                                              admin_conn, unplaceable_flavor):
    config, store, tmp = setup
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        "--parameter", "flavor", unplaceable_flavor.name,
        builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 1, result.stderr[-2000:]
    image = builds.record(result)
    error = image["status_detail"]["error"]
    assert "\n" not in error
    assert error.startswith("waiting for server imgfac-nova-"), error
    assert (": Nova put the server in ERROR: No valid host was found "
            "(flavor '%s': 1 vCPU, %d MiB RAM, 4 GiB disk; image properties "
            % (unplaceable_flavor.name, UNPLACEABLE_RAM)) in error, error
    # The build's user may not read placement: it says who can.
    assert error.endswith("these credentials may not read placement, where "
                          "the cloud's administrator can see which resource "
                          "is short"), error
    assert builds.cloud_left(admin_conn, image["identifier"]) == []


def test_unplaceable_flavor_explained_to_an_admin(conn, admin_conn,
                                                  unplaceable_flavor):
    """With placement readable, the line says what no host has free."""
    from novaimagebuilder.machines import faults
    from novaimagebuilder.machines import nova_servers
    image = next(i for i in conn.image.images()
                 if i.status == "active" and i.disk_format == "qcow2")
    server = conn.compute.create_server(
        name="imgfac-ft-unplaceable", image_id=image.id,
        flavor_id=unplaceable_flavor.id,
        networks=[{"uuid": conn.network.find_network("imgfac-net").id}])
    try:
        for _ in range(120):
            server = conn.compute.get_server(server.id)
            if server.status == "ERROR":
                break
            time.sleep(1)
        line = faults.server_error(server, admin_conn)
    finally:
        conn.compute.delete_server(server.id)
        nova_servers.wait_server_gone(conn, server.id)
    assert "no compute host has %d MiB RAM free (the most is " \
        % UNPLACEABLE_RAM in line, line
    # Before a build, so nothing is made: with placement readable (an
    # admin's credentials) the flavor is refused; without, Nova will say.
    from novaimagebuilder import errors
    with pytest.raises(errors.BuildError) as raised:
        faults.check_placeable(admin_conn, unplaceable_flavor)
    assert str(raised.value).startswith(
        "no compute host can place flavor '%s' (1 vCPU, %d MiB RAM, 4 GiB "
        "disk): no compute host has %d MiB RAM free (the most is "
        % ((unplaceable_flavor.name,) + (UNPLACEABLE_RAM,) * 2))
    faults.check_placeable(conn, unplaceable_flavor)


@pytest.fixture
def quota_project(admin_conn, test_cloud, tmp_path):
    """A project of its own for the user imgfac, and a clouds.yaml with its
    entry ``imgfac-ft-quota``: ``(env, project)``."""
    project = admin_conn.identity.create_project(
        name="imgfac-ft-quota-" + uuid.uuid4().hex[:6], domain_id="default")
    user = admin_conn.identity.find_user("imgfac")
    admin_conn.identity.assign_project_role_to_user(
        project, user, admin_conn.identity.find_role("member"))
    with open(test_cloud.clouds_yaml) as handle:
        clouds = yaml.safe_load(handle)
    entry = dict(clouds["clouds"]["imgfac-test"])
    entry["auth"] = dict(entry["auth"], project_name=project.name)
    clouds["clouds"]["imgfac-ft-quota"] = entry
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    os.chmod(path, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(PYTHONPATH=builds.REPO, OS_CLIENT_CONFIG_FILE=str(path),
               OS_CLOUD="imgfac-ft-quota")
    yield env, project
    admin_conn.compute.revert_quota_set(project)
    admin_conn.network.delete_quota(project.id)
    for group in admin_conn.network.security_groups(project_id=project.id):
        admin_conn.network.delete_security_group(group, ignore_missing=True)
    admin_conn.identity.delete_project(project, ignore_missing=True)


@pytest.mark.parametrize("service,quota,error", [
    ("compute", {"instances": 0}, "Nova instances: 0 of 0 left, the build "
     "needs 1"),
    ("network", {"security_groups": 0}, "Neutron security groups: 0 of 0 "
     "left, the build needs 1"),
])
def test_a_short_quota_fails_before_anything_is_made(
        quota_project, setup, admin_conn, service, quota, error):
    env, project = quota_project
    if service == "compute":
        admin_conn.compute.update_quota_set(project, **quota)
    else:
        admin_conn.network.update_quota(project.id, **quota)
    config, store, tmp = setup
    # The project has no network of its own: Nova chooses.
    params = ("--parameter", "flavor", "2",
              "--parameter", "default_user", "debian")
    result = builds.imgfac(config, "base_image",
                           *builds.with_install_script(params, tmp),
                           builds.write_template(tmp), env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.strip().endswith(
        "the project's quota is too small for this build: " + error)
    assert builds.store_is_empty(store)
    assert list(admin_conn.compute.servers(all_projects=True,
                                           project_id=project.id)) == []
    assert list(admin_conn.image.images(owner=project.id)) == []
    assert [g.name for g in admin_conn.network.security_groups(
        project_id=project.id)] in ([], ["default"])

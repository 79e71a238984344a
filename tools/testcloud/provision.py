"""Create the test cloud's API objects; runs with the venv's python.

    python -m testcloud.provision STEP...
        (identity resources compute volumes images)

Every step looks before it creates, so running it again changes nothing.
identity:  service accounts, catalog, project `imgfac` and its users.
resources: flavors (`bfv`: disk 0, servers must boot from volumes), the
           shared external network `public`, the tenant network
           `imgfac-net` and the router between them.
compute:   wait until Nova and Placement know the compute node.
volumes:   wait for cinder-volume; the volume quota of project `imgfac`.
images:    upload the test guest disk to Glance as public `debian-guest`.
"""
import hashlib
import ipaddress
import os
import sys
import time

import openstack

from testcloud import credentials
from testcloud import layout as names
from testcloud.configs import KEYSTONE_URL

FLAVORS = (
    # name (also the id), RAM MiB, vCPUs, disk GiB
    ("1", 512, 1, 2),
    ("2", 1024, 1, 4),
    ("m1.tiny", 512, 1, 2),
    ("bfv", 512, 1, 0),
)

#: Block storage quota of project imgfac (Cinder's defaults are 10/1000/10).
VOLUME_QUOTA = {"volumes": 20, "snapshots": 20, "gigabytes": 200}

GUEST_IMAGE = "debian-guest"


def admin_connection(secrets):
    return openstack.connect(
        load_yaml_config=False, load_envvars=False,
        auth_url=KEYSTONE_URL + "/v3", username=names.ADMIN,
        password=secrets["admin"], project_name="admin",
        user_domain_name="Default", project_domain_name="Default",
        region_name=names.REGION)


def say(message):
    print(message, flush=True)


def ensure_project(conn, name, description):
    project = conn.identity.find_project(name, domain_id="default")
    if project is None:
        project = conn.identity.create_project(
            name=name, domain_id="default", description=description)
        say("created project %s" % name)
    return project


def ensure_role(conn, name):
    return (conn.identity.find_role(name)
            or conn.identity.create_role(name=name))


def ensure_user(conn, name, password, project, roles):
    user = conn.identity.find_user(name, domain_id="default")
    if user is None:
        user = conn.identity.create_user(
            name=name, password=password, domain_id="default",
            default_project_id=project.id)
        say("created user %s" % name)
    for role_name in roles:
        role = ensure_role(conn, role_name)
        if not conn.identity.validate_user_has_project_role(
                project, user, role):
            conn.identity.assign_project_role_to_user(project, user, role)
    return user


def ensure_endpoints(conn, name, service_type, url):
    service = conn.identity.find_service(name)
    if service is None:
        service = conn.identity.create_service(name=name, type=service_type)
    have = {e.interface for e in conn.identity.endpoints(
        service_id=service.id)}
    for interface in ("public", "internal", "admin"):
        if interface not in have:
            conn.identity.create_endpoint(
                service_id=service.id, interface=interface, url=url,
                region_id=names.REGION)
            say("created %s endpoint %s %s" % (name, interface, url))


def identity(conn, secrets):
    service_project = ensure_project(conn, "service", "OpenStack services")
    for user in names.CATALOG:
        ensure_user(conn, user, secrets[user], service_project,
                    ("admin", "service"))
    project = ensure_project(conn, names.PROJECT, "imgfac-nova tests")
    ensure_user(conn, names.USER, secrets["user"], project,
                ("member", "reader"))
    for name, (service_type, port, path) in names.CATALOG.items():
        ensure_endpoints(conn, name, service_type,
                         "http://127.0.0.1:%d%s" % (port, path))


def ensure_subnet(conn, network, name, cidr, project_id=None):
    """A DHCP-less subnet: gateway .1, addresses from .10 on."""
    subnet = conn.network.find_subnet(name, network_id=network.id)
    if subnet is None:
        net = ipaddress.ip_network(cidr)
        args = dict(network_id=network.id, name=name, ip_version=4,
                    cidr=cidr, is_dhcp_enabled=False, gateway_ip=str(net[1]),
                    allocation_pools=[{"start": str(net[10]),
                                       "end": str(net[-6])}])
        if project_id:
            args["project_id"] = project_id
        subnet = conn.network.create_subnet(**args)
        say("created subnet %s %s" % (name, cidr))
    return subnet


def resources(conn):
    for name, ram, vcpus, disk in FLAVORS:
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, id=name, ram=ram,
                                       vcpus=vcpus, disk=disk, is_public=True)
            say("created flavor %s (%d MiB, %d vCPU, %d GiB)"
                % (name, ram, vcpus, disk))
    project = conn.identity.find_project(names.PROJECT, domain_id="default")

    public = conn.network.find_network(names.PUBLIC_NET)
    if public is None:
        public = conn.network.create_network(
            name=names.PUBLIC_NET, is_router_external=True, is_shared=True,
            provider_network_type="flat",
            provider_physical_network=names.PUBLIC_NET)
        say("created external network %s" % names.PUBLIC_NET)
    ensure_subnet(conn, public, names.PUBLIC_NET + "-subnet",
                  names.PUBLIC_CIDR)

    net = conn.network.find_network(names.TENANT_NET, project_id=project.id)
    if net is None:
        net = conn.network.create_network(name=names.TENANT_NET,
                                          project_id=project.id)
        say("created network %s" % names.TENANT_NET)
    subnet = ensure_subnet(conn, net, names.TENANT_NET + "-subnet",
                           names.TENANT_CIDR, project.id)

    router = conn.network.find_router("imgfac-router", project_id=project.id)
    if router is None:
        router = conn.network.create_router(
            name="imgfac-router", project_id=project.id,
            external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        say("created router imgfac-router (%s <-> %s)"
            % (names.TENANT_NET, names.PUBLIC_NET))


def compute(conn, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        hypervisors = [h for h in conn.compute.hypervisors(details=True)
                       if h.state == "up" and h.status == "enabled"]
        providers = list(conn.placement.resource_providers())
        if hypervisors and providers:
            return
        if time.monotonic() > deadline:
            raise SystemExit("compute node not visible after %d s "
                             "(hypervisors up: %d, resource providers: %d)"
                             % (timeout, len(hypervisors), len(providers)))
        time.sleep(1)


def volumes(conn, timeout=120):
    deadline = time.monotonic() + timeout
    while not any(s.binary == "cinder-volume" and s.state == "up"
                  and s.status == "enabled"
                  for s in conn.block_storage.services()):
        if time.monotonic() > deadline:
            raise SystemExit("cinder-volume is not up after %d s" % timeout)
        time.sleep(1)
    project = conn.identity.find_project(names.PROJECT, domain_id="default")
    quota = conn.block_storage.get_quota_set(project)
    if any(getattr(quota, k) != v for k, v in VOLUME_QUOTA.items()):
        conn.block_storage.update_quota_set(project, **VOLUME_QUOTA)
        say("set the volume quota of %s: %s" % (names.PROJECT, ", ".join(
            "%s %d" % kv for kv in sorted(VOLUME_QUOTA.items()))))


def sha512(path):
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def images(conn, layout):
    path = layout.path("guests", GUEST_IMAGE + ".qcow2")
    if not os.path.exists(path):
        raise SystemExit("guest image %s is missing" % path)
    wanted = sha512(path)
    old = [i for i in conn.image.images(name=GUEST_IMAGE)]
    if any(i.hash_value == wanted and i.status == "active" for i in old):
        return
    conn.create_image(GUEST_IMAGE, filename=path, disk_format="qcow2",
                      container_format="bare", visibility="public",
                      wait=True)
    say("uploaded %s to Glance" % GUEST_IMAGE)
    for image in old:
        conn.image.delete_image(image)


def main(argv):
    layout = names.Layout()
    secrets = credentials.load(layout)
    conn = admin_connection(secrets)
    steps = {
        "identity": lambda: identity(conn, secrets),
        "resources": lambda: resources(conn),
        "compute": lambda: compute(conn),
        "volumes": lambda: volumes(conn),
        "images": lambda: images(conn, layout),
    }
    unknown = [s for s in argv[1:] if s not in steps]
    if unknown or not argv[1:]:
        raise SystemExit("usage: provision {%s}..." % ",".join(steps))
    for step in argv[1:]:
        steps[step]()


if __name__ == "__main__":
    main(sys.argv)

"""The test cloud's services, exercised through their real APIs.

These tests talk to the Keystone, Glance, Nova and Neutron started by
tools/test-cloud (see conftest.py) and to the tool itself.
"""
import hashlib
import ipaddress
import os
import socket
import subprocess
import threading

import openstack
import pytest

from tests.poll import wait_for

from tests.functional.conftest import run_tool

SERVICES = ("mariadb", "rabbitmq", "ceph-mon", "ceph-mgr", "ceph-osd",
            "keystone", "glance", "placement", "nova-api", "cinder-api",
            "neutron", "nova-conductor", "nova-scheduler", "cinder-scheduler",
            "cinder-volume", "nova-compute", "www", "fip-forwarder")
HTTP_PORTS = {"keystone": 5000, "glance": 9292, "placement": 8778,
              "nova-api": 8774, "cinder-api": 8776, "neutron": 9696,
              "www": 8090}
TENANT_CIDR = ipaddress.ip_network("127.42.0.0/16")
PUBLIC_CIDR = ipaddress.ip_network("127.43.0.0/24")


# -- the tool ---------------------------------------------------------------

def test_status_lists_every_service_up(test_cloud):
    result = run_tool("status")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in
            result.stdout.splitlines()[1:] if line and
            not line.startswith("total")}
    assert set(rows) == set(SERVICES)
    for name, row in rows.items():
        assert row[1] == "up", row
        assert os.path.exists("/proc/%s" % row[2]), row
    for name, port in HTTP_PORTS.items():
        assert rows[name][3] == "127.0.0.1:%d" % port


def test_env_prints_client_exports(test_cloud):
    result = run_tool("env")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "export OS_CLOUD=imgfac-test" in lines
    config = [line for line in lines
              if line.startswith("export OS_CLIENT_CONFIG_FILE=")]
    assert len(config) == 1
    path = config[0].split("=", 1)[1]
    with open(path) as f:
        text = f.read()
    assert "imgfac-test:" in text and "imgfac-test-admin:" in text


def test_openstack_cli_works_with_generated_clouds_yaml(test_cloud):
    cli = os.path.join(test_cloud.state_dir, "venv", "bin", "openstack")
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=test_cloud.clouds_yaml)
    env.pop("OS_CLOUD", None)
    result = subprocess.run(
        [cli, "--os-cloud", "imgfac-test", "server", "list", "-f", "json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("[")


def listening_sockets():
    """{(address, port)} of listening TCP sockets, from /proc/net."""
    found = set()
    for name, family in (("tcp", 4), ("tcp6", 6)):
        with open("/proc/net/" + name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # LISTEN
                    continue
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                if family == 4:
                    addr = ipaddress.IPv4Address(raw[::-1])
                else:
                    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                    addr = ipaddress.IPv6Address(b"".join(words))
                found.add((addr, int(hex_port, 16)))
    return found


def test_services_listen_on_loopback_only(test_cloud):
    ports = set(HTTP_PORTS.values()) | {5682, 25682, 3300, 6789}
    sockets = [(a, p) for a, p in listening_sockets() if p in ports]
    assert {p for _, p in sockets} == ports
    # and Ceph's manager and OSD, on ports of its 6800-7300 range
    sockets += [(a, p) for a, p in listening_sockets() if 6800 <= p <= 7300]
    assert len(sockets) > len(ports)
    for address, port in sockets:
        assert address.is_loopback, "%s listens on %s" % (port, address)


# -- Keystone ---------------------------------------------------------------

def test_non_admin_user_gets_project_scoped_token(conn):
    access = conn.session.auth.get_access(conn.session)
    assert access.auth_token
    assert access.project_name == "imgfac"
    assert access.username == "imgfac"
    assert "member" in access.role_names
    assert "admin" not in access.role_names
    # The token works against another service and is refused as admin.
    assert conn.compute.find_flavor("2") is not None
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(conn.identity.users())


def test_flavors_exist(conn):
    flavor = conn.compute.find_flavor("2", ignore_missing=False)
    assert flavor.vcpus == 1
    assert 512 <= flavor.ram <= 1024
    assert 2 <= flavor.disk <= 4
    names = {f.name for f in conn.compute.flavors()}
    assert {"1", "2", "m1.tiny"} <= names


# -- Glance -----------------------------------------------------------------

@pytest.fixture
def qcow2_file(tmp_path):
    """A real qcow2 image with 2 MiB of written data."""
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path),
                    "16M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 2M",
                    str(path)], check=True, capture_output=True)
    return path


def digests(data):
    return hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest()


def test_image_upload_and_download_checksums(conn, qcow2_file, cleanup,
                                             unique_name):
    data = qcow2_file.read_bytes()
    md5, sha512 = digests(data)
    image = conn.create_image(unique_name, filename=str(qcow2_file),
                              disk_format="qcow2", container_format="bare",
                              wait=True, timeout=120)
    cleanup.append(lambda: conn.image.delete_image(image))
    image = conn.image.get_image(image)
    assert image.status == "active"
    assert image.size == len(data)
    assert image.checksum == md5
    assert image.hash_algo == "sha512" and image.hash_value == sha512
    downloaded = conn.image.download_image(image).content
    assert digests(downloaded) == (md5, sha512)

    conn.image.delete_image(image)
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.get_image(image.id)


def test_image_import_glance_direct(conn, qcow2_file, cleanup, unique_name):
    data = qcow2_file.read_bytes()
    image = conn.image.create_image(name=unique_name, disk_format="qcow2",
                                    container_format="bare")
    cleanup.append(lambda: conn.image.delete_image(image))
    conn.image.stage_image(image, data=data)
    conn.image.import_image(image, method="glance-direct")
    image = conn.image.wait_for_status(image, status="active",
                                       failures=["killed"], wait=120)
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert conn.image.download_image(image).content == data


def test_glance_rejects_data_not_matching_disk_format(conn, cleanup,
                                                      unique_name):
    image = conn.image.create_image(name=unique_name, disk_format="qcow2",
                                    container_format="bare")
    cleanup.append(lambda: conn.image.delete_image(image))
    response = conn.image.put(
        "/images/%s/file" % image.id, data=b"not a qcow2 image" * 64,
        headers={"Content-Type": "application/octet-stream"}, raise_exc=False)
    assert response.status_code == 415, response.text
    assert "qcow2" in response.text
    assert conn.image.get_image(image).status == "queued"


# -- Neutron ----------------------------------------------------------------

def test_security_group_and_rules_lifecycle(conn, cleanup, unique_name):
    group = conn.network.create_security_group(name=unique_name)
    cleanup.append(lambda: conn.network.delete_security_group(group))
    rule = conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", ethertype="IPv4",
        protocol="tcp", port_range_min=22, port_range_max=22,
        remote_ip_prefix="0.0.0.0/0")
    rules = list(conn.network.security_group_rules(security_group_id=group.id))
    assert rule.id in {r.id for r in rules}
    assert conn.network.get_security_group_rule(rule.id).port_range_min == 22

    conn.network.delete_security_group_rule(rule)
    remaining = {r.id for r in conn.network.security_group_rules(
        security_group_id=group.id)}
    assert rule.id not in remaining
    conn.network.delete_security_group(group)
    assert conn.network.find_security_group(group.id) is None


def test_network_port_floating_ip_lifecycle(conn, cleanup, unique_name):
    public = conn.network.find_network("public", ignore_missing=False)
    assert public.is_router_external

    net = conn.network.create_network(name=unique_name)
    cleanup.append(lambda: conn.network.delete_network(net))
    subnet = conn.network.create_subnet(
        network_id=net.id, name=unique_name, ip_version=4,
        cidr="127.44.0.0/24", is_dhcp_enabled=False)
    cleanup.append(lambda: conn.network.delete_subnet(subnet))
    router = conn.network.create_router(
        name=unique_name, external_gateway_info={"network_id": public.id})
    cleanup.append(lambda: conn.network.delete_router(router))
    conn.network.add_interface_to_router(router, subnet=subnet.id)
    cleanup.append(lambda: conn.network.remove_interface_from_router(
        router, subnet=subnet.id))

    port = conn.network.create_port(network_id=net.id, name=unique_name)
    cleanup.append(lambda: conn.network.delete_port(port))
    fixed = port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(fixed) in ipaddress.ip_network("127.44.0.0/24")

    fip = conn.network.create_ip(floating_network_id=public.id)
    cleanup.append(lambda: conn.network.delete_ip(fip))
    assert ipaddress.ip_address(fip.floating_ip_address) in PUBLIC_CIDR
    assert fip.port_id is None

    fip = conn.network.update_ip(fip, port_id=port.id)
    assert fip.port_id == port.id and fip.fixed_ip_address == fixed
    fip = conn.network.update_ip(fip, port_id=None)
    assert fip.port_id is None and fip.fixed_ip_address is None

    conn.network.delete_ip(fip)
    assert conn.network.find_ip(fip.id) is None
    conn.network.delete_port(port)
    assert conn.network.find_port(port.id) is None


class EchoServer:
    """A one-line TCP echo server on (address, port) with a greeting."""

    def __init__(self, address, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            with client:
                client.sendall(b"echo:" + client.recv(64))

    def close(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


def exchange(address, port, payload):
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return s.recv(128)
    except OSError:
        return None


def test_floating_ip_forwarder_relays_tcp(conn, cleanup):
    net = conn.network.find_network("imgfac-net", ignore_missing=False)
    public = conn.network.find_network("public", ignore_missing=False)
    port = conn.network.create_port(network_id=net.id)
    cleanup.append(lambda: conn.network.delete_port(port))
    fixed = port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(fixed) in TENANT_CIDR
    server = EchoServer(fixed, 22)
    cleanup.append(server.close)

    fip = conn.network.create_ip(floating_network_id=public.id,
                                 port_id=port.id)
    cleanup.append(lambda: conn.network.delete_ip(fip))
    address = fip.floating_ip_address
    assert exchange(fixed, 22, b"direct") == b"echo:direct"
    reply = wait_for(lambda: exchange(address, 22, b"via-fip"), 30,
                     "the forwarder to listen on %s:22" % address)
    assert reply == b"echo:via-fip"

    conn.network.update_ip(fip, port_id=None)
    wait_for(lambda: exchange(address, 22, b"x") is None, 30,
             "the forwarder to stop after disassociation")

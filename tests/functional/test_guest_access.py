"""Reaching build guests the way real clouds need: through a jump host, at
the address of a chosen network, with the package manager behind a proxy,
with a strict host-key policy.

The test cloud's guests are published on this machine's loopback (the
compute driver forwards each port's fixed IPv4:22 to the guest), so the
jump host here is a real sshd in a network namespace the test makes
(tests/functional/jumpbox.py): the address the build uses for the guest
answers only inside that namespace.
"""
import json
import os
import random
import socket
import subprocess

import pytest

from tests import poll
from tests.functional import builds
from tests.functional import guestcheck
from tests.functional import httpproxy
from tests.functional import jumpbox

from novaimagebuilder.guest import jump_host
from novaimagebuilder.guest import ssh
from novaimagebuilder.guest import ssh_errors


@pytest.fixture
def jump(tmp_path):
    box = jumpbox.JumpBox(tmp_path / "jump")
    os.makedirs(box.directory)
    box.start()
    yield box
    box.stop()


@pytest.fixture
def second_network(admin_conn, unique_name):
    """A shared network beside imgfac-net (a loopback subnet, as the test
    cloud's networks are), made by the admin so the project's default
    network stays the only one of its own."""
    net = admin_conn.network.create_network(name=unique_name, is_shared=True)
    cidr = "127.%d.%d.0/24" % (random.randrange(100, 200),
                               random.randrange(0, 256))
    admin_conn.network.create_subnet(
        network_id=net.id, name=unique_name, ip_version=4, cidr=cidr,
        is_dhcp_enabled=False)
    yield net
    for port in admin_conn.network.ports(network_id=net.id):
        admin_conn.network.delete_port(port, ignore_missing=True)
    admin_conn.network.delete_network(net, ignore_missing=True)


def _banner(address, port=22, timeout=5):
    """The first bytes an SSH server at address:port sends from here, b""
    when none comes (refused, reset or silent)."""
    try:
        with socket.create_connection((address, port), timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64)
    except OSError:
        return b""


def _guest_server(conn, build_id):
    name = "imgfac-nova-%s-guest" % build_id
    for server in conn.compute.servers():
        if server.name == name and server.status == "ACTIVE":
            return conn.compute.get_server(server.id)
    return None


def test_ssh_through_a_jump_host_and_back(jump, tmp_path):
    """SSHGuest through the jump host: the wait, commands, uploads and a
    remote forward all go through one jump connection, which close() ends;
    a guest the jump host cannot reach times out and leaves no connection.
    No cloud: the 'guest' is the jump sshd itself, at its namespace's
    loopback (unreachable from here)."""
    jump.expose("127.0.0.9", (jump.jump_ip, 22))
    assert not _banner("127.0.0.9").startswith(b"SSH-")
    host = jump_host.jump_host("root@%s" % jump.jump_ip, open(jump.key_path).read(),
                               known_hosts_text=open(jump.known_hosts).read())
    guest = ssh.SSHGuest("127.0.0.9", 22, "root", jump.key, jump=host,
                         host_key_policy="any")
    guest.wait_until_reachable(30)
    assert guest.run("echo through")[1] == "through\n"
    guest.put(b"data\n", str(tmp_path / "put.txt"), privileged=False)
    assert (tmp_path / "put.txt").read_text() == "data\n"
    proxy = httpproxy.RecordingProxy()
    try:
        port = guest.forward_remote("127.0.0.1", proxy.port)
        status, out = guest.run(
            "python3 -c 'import urllib.request as u; print(u.urlopen("
            "\"http://127.0.0.1:%d/x\").status)' 2>&1 | tail -1" % port,
            check=False)
        assert "502" in out  # the proxy answered, through the forward
        assert proxy.requests == ["GET /x"]
    finally:
        proxy.stop()
    assert jump.ssh_connections()
    guest.close()
    poll.wait_for(lambda: not jump.ssh_connections(), 10,
                  "the jump connection to close")

    unreachable = ssh.SSHGuest("127.0.0.10", 22, "root", jump.key,
                               jump=jump_host.jump_host(
                                   "root@%s" % jump.jump_ip,
                                   open(jump.key_path).read()))
    with pytest.raises(ssh_errors.SSHTimeout, match="cannot reach 127.0.0.10:22"):
        try:
            unreachable.wait_until_reachable(3)
        finally:
            unreachable.close()
    poll.wait_for(lambda: not jump.ssh_connections(), 10,
                  "the jump connection to close")


def test_jump_host_with_another_key_is_refused_at_once(jump, tmp_path):
    other = str(tmp_path / "other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    other], check=True)
    known = "%s %s\n" % (jump.jump_ip, " ".join(
        open(other + ".pub").read().split()[:2]))
    guest = ssh.SSHGuest("127.0.0.9", 22, "root", jump.key, jump=jump_host.jump_host(
        "root@%s" % jump.jump_ip, open(jump.key_path).read(),
        known_hosts_text=known))
    with pytest.raises(ssh_errors.JumpHostError, match="ssh_jump_known_hosts"):
        guest.wait_until_reachable(30)
    guest.close()


@pytest.mark.usefixtures("nova_base_image")  # its JEOS: this build reuses it
def test_build_through_jump_host_on_chosen_network_behind_proxy(
        jump, second_network, conn, admin_conn, cloud_env, setup):
    """One build, several checks: the guest has NICs on imgfac-net and a
    second network; ssh_network picks the second one's address, which only
    the jump host reaches (from here it leads nowhere: the test guest
    configures its first NIC only, and the namespace relays that address to
    it); apt goes through a loopback proxy (tunnelled to the guest over the
    build's SSH connection); the host-key policy is strict. COMPLETE; the
    jump connection is gone; the record says how the guest was reached;
    the image has no proxy setting left."""
    config, store, tmp = setup
    proxy = httpproxy.RecordingProxy()
    extra = tmp / "extra.json"
    extra.write_text(json.dumps({"http_proxy": proxy.url,
                                 "proxy_tunnel": True}))
    params = builds.with_install_script(builds.NOVA_PARAMS, tmp) + (
        "--parameter", "network", "imgfac-net," + second_network.name,
        "--parameter", "ssh_network", second_network.name,
        "--parameter", "ssh_jump_host", "root@" + jump.jump_ip,
        "--file-parameter", "ssh_jump_key", jump.key_path,
        "--file-parameter", "ssh_jump_known_hosts", jump.known_hosts,
        "--parameter", "ssh_host_key_policy", "strict",
        "--parameters", str(extra))
    log = open(tmp / "build.log", "w")
    proc = builds.start(config, "base_image", *params,
                        builds.write_template(tmp), env=cloud_env, stderr=log)
    try:
        build_id = builds.wait_for_record(proc, store,
                                          lambda r: True)["identifier"]
        server = poll.wait_for(lambda: _guest_server(conn, build_id), 1500,
                               "the customization server", interval=3)
        first = server.addresses["imgfac-net"][0]["addr"]
        chosen = server.addresses[second_network.name][0]["addr"]
        jump.expose(chosen, (first, 22))
        # The chosen address is no way to the guest from here.
        assert not _banner(chosen).startswith(b"SSH-")
        out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.stop()
        log.close()
    build_log = open(tmp / "build.log").read()
    assert proc.returncode == 0, build_log[-3000:]
    image = json.loads(out)
    assert image["status"] == "COMPLETE"
    props = image["properties"]
    assert props["ssh_address"] == chosen + ":22"
    assert props["ssh_jump_host"] == "root@%s:22" % jump.jump_ip
    assert props["ssh_host_key_policy"] == "strict"
    assert props["ssh_host_key_checked"] is True
    assert props["ssh_host_key_fingerprint"].startswith("SHA256:")
    assert "Waiting for SSH on %s:22 via jump host root@%s:22" % (
        chosen, jump.jump_ip) in build_log
    # The jump connection ended with the build, as sshd saw it.
    assert jump.ssh_connections() == []
    sshd_log = jump.sshd_log()
    assert "Accepted publickey for root" in sshd_log
    assert "Disconnected from user root" in sshd_log or \
        "Connection closed by" in sshd_log
    # apt fetched the template's repository through the proxy.
    assert any(r.startswith("GET http://10.0.2.2:8090/repo/")
               for r in proxy.requests), proxy.requests
    assert image["parameters"]["http_proxy"] == "***"
    assert proxy.url not in builds.record_text(store, image["identifier"])
    # Nothing of the build is left in the cloud but its image, and the image
    # has no proxy setting.
    left = builds.cloud_left(admin_conn, image["identifier"])
    glance_id = props["x-image-properties-glance_id"]
    assert left == [("image", conn.image.get_image(glance_id).name)]
    try:
        with guestcheck.booted_in_cloud(conn, glance_id) as guest:
            assert guest.run("hello")[1].strip() == "Hello, world!"
            status, dump = guest.run("apt-config dump | grep -i proxy",
                                     check=False)
            assert status == 1 and dump == ""
            assert guest.run("ls /etc/apt/apt.conf.d")[1].count(
                "imgfac-nova-proxy") == 0
    finally:
        builds.imgfac(config, "delete", image["identifier"], env=cloud_env)


#: The test installer's script, with the installed guest printing no SSH
#: host keys on its console.
SILENT_KEYS_SCRIPT = (
    "# install the test guest; its console shows no SSH host keys\n"
    "%post\n"
    "sed -i 's/^print_host_keys$/: keys not printed/' "
    "/usr/local/sbin/imgfac-firstboot\n"
    "%end\n"
    "poweroff\n")


@pytest.mark.slow
def test_strict_policy_fails_when_the_console_shows_no_keys(
        cloud_env, setup, admin_conn):
    """A guest whose console shows no host keys: with ssh_host_key_policy
    strict the build fails with one line saying so, and leaves nothing."""
    config, store, tmp = setup
    script = builds.write_script(tmp, SILENT_KEYS_SCRIPT)
    result = builds.imgfac(
        config, "base_image", *builds.NOVA_PARAMS,
        "--file-parameter", "install_script", script,
        "--parameter", "ssh_host_key_policy", "strict",
        builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 1, result.stderr[-3000:]
    image = builds.record(result)
    error = image["status_detail"]["error"]
    assert "ssh_host_key_policy is strict and the guest's console shows no " \
        "SSH host keys" in error and "\n" not in error
    assert builds.cloud_left(admin_conn, image["identifier"]) == []


@pytest.mark.slow
def test_ip_version_without_address_fails_when_active(cloud_env, setup,
                                                      admin_conn):
    """The test cloud has no IPv6: ssh_ip_version 6 fails as soon as the
    customization server is ACTIVE, naming the addresses it has."""
    config, store, tmp = setup
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        "--parameter", "ssh_ip_version", "6", builds.write_template(tmp),
        env=cloud_env)
    assert result.returncode == 1, result.stderr[-3000:]
    image = builds.record(result)
    error = image["status_detail"]["error"]
    assert "has no IPv6 address to reach it by SSH; its addresses: " \
        "imgfac-net: 127.42." in error
    assert builds.cloud_left(admin_conn, image["identifier"]) == []


@pytest.mark.parametrize("extra,error", [
    (("--parameter", "ssh_network", "nope"), "Neutron has no network 'nope'"),
    (("--parameter", "ssh_network", "public"),
     "ssh_network 'public' is not one of the build servers' networks "
     "(imgfac-net)"),
    (("--parameter", "network", "imgfac-net,nope"),
     "Neutron has no network 'nope'"),
    (("--parameter", "ssh_host", "bad host!"),
     "ssh_host 'bad host!' is not a host name or IP address"),
    (("--parameter", "ssh_jump_host", "root@jump:99999",
      "--parameter", "ssh_jump_agent", "false"),
     "ssh_jump_host 'root@jump:99999': '99999' is not a TCP port"),
    (("--parameter", "ssh_jump_host", "jump"),
     "ssh_jump_host needs a key"),
    (("--parameter", "ssh_jump_host", "jump", "--file-parameter",
      "ssh_jump_key", "/nonexistent/key"),
     "--file-parameter ssh_jump_key: cannot read /nonexistent/key"),
    (("--parameter", "ssh_jump_host", "jump", "--file-parameter",
      "ssh_jump_key", "/etc/hostname"),
     "ssh_jump_key is not a private key paramiko can read"),
    (("--parameter", "ssh_host_key_policy", "trust"),
     "'trust' is not one of console, strict, any"),
])
def test_bad_access_values_one_line_nothing_created(
        cloud_env, setup, conn, extra, error):
    config, store, tmp = setup
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp), *extra,
        builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 2, result.stderr
    assert error in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert builds.store_is_empty(store)
    assert builds.made_by(conn, result) == []


def test_bad_proxy_is_one_line(cloud_env, setup):
    config, store, tmp = setup
    extra = tmp / "proxy.json"
    extra.write_text(json.dumps({"http_proxy": "ftp://proxy:3128/"}))
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        "--parameters", str(extra), builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 2
    assert "http_proxy 'ftp://proxy:3128/' is not a proxy URL " \
        "(http://host:port/)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

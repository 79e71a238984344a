"""Reaching build guests: address precedence, jump hosts, host-key policy
(against a real sshd on loopback), proxies in the install scripts and the
package managers."""

import logging
import subprocess
import time
import types

import paramiko
import pytest
import yaml

from imgfac_nova.template import parse_template
from novaimagebuilder.scripts import autoinstall
from novaimagebuilder.guest import customize as cz
from novaimagebuilder import errors
from novaimagebuilder.guest import hostkeys
from novaimagebuilder.scripts import installscript as isc
from novaimagebuilder.scripts import preseed
from novaimagebuilder.scripts import kickstart as ks
from novaimagebuilder.machines import nova_guest
from novaimagebuilder.guest import proxy as proxy_mod
from novaimagebuilder.guest import host_key_check
from novaimagebuilder.guest import host_names
from novaimagebuilder.guest import jump_host
from novaimagebuilder.guest import ssh
from novaimagebuilder.guest import ssh_connection
from novaimagebuilder.guest import ssh_errors
from tests import poll
from tests.unit import sshd
from tests.unit.test_customize import FakeGuest

sshd_server = sshd.sshd_server
client_key = sshd.client_key
LOG = logging.getLogger("test.access")


# ---------------------------------------------------------------- addresses

def server(addresses=None, v4=None, v6=None):
    return types.SimpleNamespace(name="guest", addresses=addresses or {},
                                 access_ipv4=v4, access_ipv6=v6)


TWO_NETS = {
    "first": [{"addr": "10.0.0.5", "version": 4,
               "OS-EXT-IPS:type": "fixed"},
              {"addr": "2001:db8::5", "version": 6,
               "OS-EXT-IPS:type": "fixed"}],
    "second": [{"addr": "192.168.7.9", "version": 4,
                "OS-EXT-IPS:type": "fixed"},
               {"addr": "203.0.113.4", "version": 4,
                "OS-EXT-IPS:type": "floating"}],
}


@pytest.mark.parametrize("kwargs,expected", [
    ({}, "10.0.0.5"),                                     # first address
    ({"ip_version": "6"}, "2001:db8::5"),
    ({"network": "second"}, "192.168.7.9"),               # fixed, not floating
    ({"network": "second", "floating": "203.0.113.8"}, "203.0.113.8"),
    ({"ssh_host": "bastion-side.example", "floating": "203.0.113.8",
      "network": "second", "ip_version": "6"}, "bastion-side.example"),
])
def test_address_precedence(kwargs, expected):
    assert nova_guest.choose_address(server(TWO_NETS), **kwargs) == expected


def test_access_ip_is_the_first_address_of_its_version():
    found = server(TWO_NETS, v4="198.51.100.1", v6="2001:db8::1")
    assert nova_guest.choose_address(found) == "198.51.100.1"
    assert nova_guest.choose_address(found, ip_version=6) == "2001:db8::1"
    # A chosen network wins over the access addresses.
    assert nova_guest.choose_address(found, network="second") == "192.168.7.9"


def test_missing_version_names_the_addresses():
    with pytest.raises(errors.BuildError) as caught:
        nova_guest.choose_address(server(TWO_NETS), network="second", ip_version=6)
    assert str(caught.value) == (
        "server guest has no IPv6 address on network second to reach it by "
        "SSH; its addresses: first: 10.0.0.5, 2001:db8::5; second: "
        "192.168.7.9, 203.0.113.4")
    with pytest.raises(errors.BuildError, match="its addresses: none"):
        nova_guest.choose_address(server())


@pytest.mark.parametrize("text,expected", [
    ("jump", (None, "jump", 22)),
    ("ops@jump.example.org:2222", ("ops", "jump.example.org", 2222)),
    ("10.1.2.3", (None, "10.1.2.3", 22)),
    ("ops@[2001:db8::1]:2200", ("ops", "2001:db8::1", 2200)),
    ("[2001:db8::1]", (None, "2001:db8::1", 22)),
])
def test_jump_host_spec(text, expected):
    assert jump_host.parse_jump_host(text) == expected


@pytest.mark.parametrize("text,message", [
    ("jump:0", "'0' is not a TCP port"),
    ("jump:ssh", "'ssh' is not a TCP port"),
    ("b@d user@jump", "is not a user name"),
    ("[2001:db8::1]2200", "is not \\[user@\\]host\\[:port\\]"),
    ("", "is not a host name or IP address"),
])
def test_bad_jump_host_spec(text, message):
    with pytest.raises(ValueError, match=message):
        jump_host.parse_jump_host(text)


@pytest.mark.parametrize("text,expected", [
    ("[2001:db8::7]", "2001:db8::7"), ("2001:DB8::7", "2001:db8::7"),
    ("host-1.example", "host-1.example"), ("10.9.8.7", "10.9.8.7"),
])
def test_ssh_host_forms(text, expected):
    assert host_names.check_host(text) == expected


@pytest.mark.parametrize("text", ["bad host", "-x", "[10.0.0.1]", "1.2.3.999",
                                  "a" * 64 + ".example"])
def test_bad_ssh_host(text):
    with pytest.raises(ValueError, match="ssh_host"):
        host_names.check_host(text)


def test_ipv6_addresses_are_bracketed_in_messages():
    assert host_names.host_port("2001:db8::5", 22) == "[2001:db8::5]:22"
    assert host_names.host_port("10.0.0.5", 22) == "10.0.0.5:22"
    guest = ssh.SSHGuest("2001:db8::5", 22, "root", None)
    assert guest.address == "[2001:db8::5]:22"


def test_jump_parameters_are_checked(tmp_path):
    key = paramiko.ECDSAKey.generate()
    path = tmp_path / "key"
    key.write_private_key_file(str(path))
    jump = jump_host.jump_host("ops@jump:2222", path.read_text())
    assert (jump.address, jump.pkey.get_base64()) == (
        "ops@jump:2222", key.get_base64())
    key.write_private_key_file(str(path), password="pass")
    for args, message in [
            (("jump", path.read_text()), "encrypted with a passphrase"),
            (("jump", "not a key"), "not a private key paramiko can read"),
            (("jump",), "needs a key"),
            (("jump", "k", True), "not both"),
            ((None, "k"), "ssh_jump_key is given but ssh_jump_host is not"),
            (("jump", None, False, "junk line"),
             "needs a key")]:
        with pytest.raises(ValueError, match=message):
            jump_host.jump_host(*args)
    with pytest.raises(ValueError, match="ssh_jump_known_hosts:1: not a "
                                         "known_hosts line"):
        jump_host.known_hosts("jump ssh-ed25519\n")


def test_build_host_keys_cannot_go_with_policy_any():
    from imgfac_nova.plugins import common
    with pytest.raises(errors.BuildError) as caught:
        common.check_guest_access({"ssh_host_keys": "build",
                                   "ssh_host_key_policy": "any"})
    assert str(caught.value) == ("ssh_host_keys build checks the guest's "
                                 "key; it cannot go with ssh_host_key_policy "
                                 "any")
    common.check_guest_access({"ssh_host_keys": "auto",
                               "ssh_host_key_policy": "any"})


# ---------------------------------------------------------------- host keys

def _guest(server, key, policy, jump=None, host="127.0.0.1", port=None,
           key_grace=0, host_keys=lambda: [], **kwargs):
    return ssh.SSHGuest(host, port or server.port, "root", key,
                        host_keys=host_keys, host_key_policy=policy,
                        log=LOG, jump=jump, key_grace=key_grace, **kwargs)


def test_console_policy_waits_for_keys_then_accepts_the_first_with_a_warning(
        sshd_server, client_key, caplog):
    started = time.monotonic()
    with _guest(sshd_server, client_key, "console", key_grace=2) as guest:
        guest.wait_until_reachable(30)
        assert time.monotonic() - started >= 2
        assert guest.host_key == {
            "policy": "console", "checked": False,
            "fingerprint": host_key_check.fingerprint(sshd_server.host_key),
            "key_type": "ssh-ed25519",
            "warning": "the console showed no SSH host keys within 2 s; "
                       "accepted the first key offered"}
    assert any(r.levelno == logging.WARNING and "console showed no SSH host "
               "keys within 2 s" in r.getMessage() for r in caplog.records)


def test_console_policy_checks_keys_that_appear_within_the_grace_period(
        sshd_server, client_key):
    """The console shows keys a moment after sshd answers (cloud-init):
    they are checked, not the first key taken; a key other than those
    shown is refused."""
    right = [host_key_check.fingerprint(sshd_server.host_key)]
    wrong = ["SHA256:" + "B" * 43]
    for keys, fails in ((right, False), (wrong, True)):
        shown_after = time.monotonic() + 1.5
        guest = _guest(sshd_server, client_key, "console", key_grace=60,
                       host_keys=lambda keys=keys: keys
                       if time.monotonic() > shown_after else [])
        with guest:
            if fails:
                with pytest.raises(ssh_errors.HostKeyMismatch, match="does not "
                                   "match the expected keys"):
                    guest.wait_until_reachable(30)
                continue
            guest.wait_until_reachable(30)
            assert time.monotonic() - shown_after < 10
            assert guest.host_key["checked"] is True
            assert guest.host_key["source"] == "console"


@pytest.fixture(scope="module")
def keyed_sshd(tmp_path_factory):
    """A real sshd whose host key the build made (hostkeys.generate)."""
    key = hostkeys.generate()
    server = sshd.SSHServer(tmp_path_factory.mktemp("keyed"),
                            host_key=key.private).start()
    login = paramiko.ECDSAKey.generate()
    server.authorize(login)
    yield server, key, login
    server.stop()


def test_the_builds_key_is_accepted_at_once_without_the_console(keyed_sshd):
    """OpenSSH serves the key hostkeys made; the check needs no console
    keys and no grace period, whatever the policy."""
    server, key, login = keyed_sshd
    assert host_key_check.fingerprint(server.host_key) == key.fingerprint
    for policy in ("console", "strict"):
        started = time.monotonic()
        with _guest(server, login, policy, key_grace=60,
                    build_keys=[key.public]) as guest:
            guest.wait_until_reachable(30)
            assert time.monotonic() - started < 10
            assert guest.host_key == {
                "policy": policy, "checked": True, "source": "build",
                "fingerprint": key.fingerprint, "key_type": "ssh-ed25519"}


def test_another_key_than_the_builds_fails_at_once_in_one_line(keyed_sshd):
    server, key, login = keyed_sshd
    other = hostkeys.generate()
    guest = _guest(server, login, "console", key_grace=60,
                   host_keys=[key.fingerprint], build_keys=[other.public],
                   build_only=True)
    started = time.monotonic()
    with pytest.raises(ssh_errors.HostKeyMismatch) as caught:
        guest.wait_until_reachable(30)
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        "SSH host key of 127.0.0.1:%d is not the one the build gave the "
        "guest: the server offered ssh-ed25519 %s, expected %s"
        % (server.port, key.fingerprint, other.fingerprint))


def test_auto_checks_another_key_against_the_console(keyed_sshd):
    """ssh_host_keys auto: a guest without cloud-init keeps its own key,
    which the console's keys then vouch for."""
    server, key, login = keyed_sshd
    with _guest(server, login, "strict", host_keys=[key.public],
                build_keys=[hostkeys.generate().public]) as guest:
        guest.wait_until_reachable(30)
        assert guest.host_key["source"] == "console"
        assert guest.host_key["checked"] is True


def test_a_reconnection_must_offer_the_key_accepted_first(keyed_sshd):
    server, key, login = keyed_sshd
    guest = _guest(server, login, "console", build_keys=[key.public])
    with guest:
        guest.wait_until_reachable(30)
        guest._pinned = "ssh-ed25519 " + hostkeys.generate().public.split()[1]
        guest._disconnect()
        with pytest.raises(ssh_errors.HostKeyMismatch, match="is not the one it "
                           "offered when the build first connected"):
            guest.run("true")


def test_strict_policy_without_console_keys_fails_in_one_line(
        sshd_server, client_key):
    guest = _guest(sshd_server, client_key, "strict", key_grace=1)
    with pytest.raises(ssh_errors.HostKeyUnverified) as caught:
        guest.wait_until_reachable(30)
    assert str(caught.value) == (
        "ssh_host_key_policy is strict and the guest's console shows no SSH "
        "host keys: refusing the unverified key of 127.0.0.1:%d (ssh-ed25519 "
        "%s) (waited 1 s for the console to show them)"
        % (sshd_server.port, host_key_check.fingerprint(sshd_server.host_key)))


def test_strict_policy_accepts_console_keys(sshd_server, client_key):
    key = sshd_server.host_key
    guest = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                         host_keys=[host_key_check.fingerprint(key)],
                         host_key_policy="strict")
    with guest:
        guest.wait_until_reachable(10)
        assert guest.host_key["checked"] is True
        assert guest.host_key["fingerprint"] == host_key_check.fingerprint(key)


def test_any_policy_checks_nothing_and_warns(sshd_server, client_key, caplog):
    guest = ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                         host_keys=["SHA256:" + "A" * 43],
                         host_key_policy="any", log=LOG)
    with guest:
        guest.wait_until_reachable(10)
        assert guest.host_key["checked"] is False
        assert "not checked" in guest.host_key["warning"]
    assert "ssh_host_key_policy any" in caplog.text


# ---------------------------------------------------------------- jump host

def test_jump_host_tunnels_commands_and_closes(sshd_server, client_key,
                                               tmp_path):
    known = jump_host.known_hosts("[127.0.0.1]:%d ssh-ed25519 %s\n" % (
        sshd_server.port, sshd_server.host_key.get_base64()))
    jump = jump_host.JumpHost("127.0.0.1", sshd_server.port, "root", client_key,
                              known)
    guest = _guest(sshd_server, client_key, "any", jump=jump)
    assert guest.address == "127.0.0.1:%d via root@127.0.0.1:%d" % (
        (sshd_server.port,) * 2)
    guest.wait_until_reachable(10)
    assert jump.connected
    assert guest.run("echo tunnelled")[1] == "tunnelled\n"
    guest.put(b"x", str(tmp_path / "f"), privileged=False)
    assert (tmp_path / "f").read_bytes() == b"x"
    guest.close()
    assert not jump.connected


def test_jump_host_key_not_listed_is_refused(sshd_server, client_key):
    other = paramiko.ECDSAKey.generate()
    known = jump_host.known_hosts("[127.0.0.1]:%d ecdsa-sha2-nistp256 %s\n" % (
        sshd_server.port, other.get_base64()))
    jump = jump_host.JumpHost("127.0.0.1", sshd_server.port, "root", client_key,
                              known)
    guest = _guest(sshd_server, client_key, "any", jump=jump)
    with pytest.raises(ssh_errors.JumpHostError, match="ssh_jump_known_hosts"):
        guest.wait_until_reachable(10)
    assert not jump.connected


def test_jump_host_refusing_the_key_is_one_line(sshd_server, client_key):
    jump = jump_host.JumpHost("127.0.0.1", sshd_server.port, "root",
                              paramiko.ECDSAKey.generate())
    guest = _guest(sshd_server, client_key, "any", jump=jump)
    with pytest.raises(ssh_errors.JumpHostError) as caught:
        guest.wait_until_reachable(10)
    assert str(caught.value) == ("SSH jump host root@127.0.0.1:%d refused "
                                 "ssh_jump_key" % sshd_server.port)


def test_pipeline_closes_the_jump_when_the_guest_is_unreachable(
        sshd_server, client_key):
    from novaimagebuilder.tasks import context
    jump = jump_host.JumpHost("127.0.0.1", sshd_server.port, "root", client_key)
    run = context.BuildRun(types.SimpleNamespace(
        console=lambda machine, lines: "",
        ssh_limits=lambda machine: ""), None, parameters={"ssh_timeout": 2})
    with pytest.raises(ssh_errors.SSHTimeout, match="cannot reach 127.0.0.1:1"):
        run.connect("guest", "127.0.0.1", 1, client_key, jump)
    assert not jump.connected


# ---------------------------------------------------------------- proxies

def test_proxy_parameters():
    proxy = proxy_mod.Proxy.from_parameters({
        "http_proxy": "http://proxy:3128/", "no_proxy": "a.example, b"})
    assert proxy == proxy_mod.Proxy("http://proxy:3128/", None,
                                    ("a.example", "b"), False)
    assert proxy.for_url("https://x/") == "http://proxy:3128/"
    assert proxy_mod.Proxy.from_parameters({}) is None
    for values, message in [
            ({"http_proxy": "proxy:3128"}, "is not a proxy URL"),
            ({"https_proxy": "http://p:x/"}, "port of http://p:x/"),
            ({"http_proxy": "http://u:secret@p:1/path"},
             "'http://u:\\*\\*\\*@p:1/path' is not a proxy URL"),
            ({"no_proxy": "a"}, "neither http_proxy nor https_proxy")]:
        with pytest.raises(ValueError, match=message):
            proxy_mod.Proxy.from_parameters(values)


def test_tunnelled_proxy_points_at_the_forwards():
    forwards = []

    def forward(host, port):
        forwards.append((host, port))
        return 41000 + len(forwards)
    proxy = proxy_mod.Proxy("http://u:pw@proxy:3128/", "http://proxy:3128/")
    local = proxy.tunnelled(forward)
    assert forwards == [("proxy", 3128)]
    assert (local.http, local.https) == ("http://u:pw@127.0.0.1:41001/",
                                         "http://127.0.0.1:41001/")


def _echo_server():
    """A listener here that answers each connection's 5 bytes with pong."""
    import socket
    import threading
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(5)
            conn.sendall(b"pong")
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return listener


PING = ("python3 -c 'import socket; s=socket.create_connection((\"127.0.0.1\""
        ", %d)); s.sendall(b\"ping!\"); print(s.recv(4).decode())'")


def _lose_connection(guest, port):
    """End the guest's SSH connection from this side and wait until its
    sshd lets go of the forward's port."""
    import socket
    guest._client.get_transport().close()

    def released():
        try:
            with socket.create_server(("127.0.0.1", port)):
                return True
        except OSError:
            return False
    poll.wait_for(released, 10, "sshd to release port %d" % port,
                  interval=0.1)


def test_remote_forward_is_bound_again_after_a_lost_connection(
        sshd_server, client_key):
    listener = _echo_server()
    with ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                      host_key_policy="any") as guest:
        guest.wait_until_reachable(10)
        port = guest.forward_remote("127.0.0.1", listener.getsockname()[1])
        assert guest.run(PING % port)[1] == "pong\n"
        _lose_connection(guest, port)
        assert guest.run(PING % port)[1] == "pong\n"
    listener.close()


def test_remote_forward_whose_port_is_taken_meanwhile_is_one_error(
        sshd_server, client_key, monkeypatch):
    import socket
    monkeypatch.setattr(ssh_connection, "FORWARD_AGAIN_WITHIN", 2.0)
    listener = _echo_server()
    service = listener.getsockname()[1]
    with ssh.SSHGuest("127.0.0.1", sshd_server.port, "root", client_key,
                      host_key_policy="any") as guest:
        guest.wait_until_reachable(10)
        port = guest.forward_remote("127.0.0.1", service)
        _lose_connection(guest, port)
        with socket.create_server(("127.0.0.1", port)):
            with pytest.raises(errors.BuildError) as caught:
                guest.run("true")
    listener.close()
    assert str(caught.value) == (
        "SSH connection to 127.0.0.1:%d was lost and guest port 127.0.0.1:%d"
        " (forwarding to %s) is still held after 2 s, so the guest cannot "
        "reach it" % (sshd_server.port, port, "127.0.0.1:%d" % service))


def _template(os_name, version, url):
    return parse_template(f"""<template><name>t</name>
  <os><name>{os_name}</name><version>{version}</version><arch>x86_64</arch>
    <install type="url"><url>{url}</url></install></os></template>""")


PROXIES = {"http_proxy": "http://proxy.example:3128/",
           "https_proxy": "http://secure-proxy.example:3129/"}


def test_preseed_proxy_lines():
    template = _template("Debian", "12", "http://deb.example/debian/")
    text, _ = preseed.preseed(template, PROXIES)
    assert "d-i mirror/http/proxy string http://proxy.example:3128/\n" in text
    assert "sed -i '/^Acquire::[a-z]*::Proxy /d' /target/etc/apt/apt.conf" \
        in text
    kept, _ = preseed.preseed(template, dict(PROXIES, proxy_persist=True))
    assert "mirror/http/proxy string http://proxy.example:3128/" in kept
    assert "::Proxy" not in kept
    plain, _ = preseed.preseed(template)
    assert "d-i mirror/http/proxy string\n" in plain


def test_kickstart_proxy_lines():
    template = _template("Fedora", "41", "https://dl.example/fedora/41/")
    text, _ = isc.kickstart(template, PROXIES)
    assert 'url --url="https://dl.example/fedora/41/" ' \
        '--proxy="http://secure-proxy.example:3129/"\n' in text
    assert ks.parse(text, "Fedora", "41") == []
    plain, _ = isc.kickstart(template)
    assert "--proxy" not in plain


def test_autoinstall_proxy_lines():
    template = _template("Ubuntu", "24.04",
                         "http://archive.example/ubuntu/dists/noble/")
    text, _ = autoinstall.autoinstall(template, PROXIES)
    config = autoinstall.validate(text)
    assert config["proxy"] == "http://proxy.example:3128/"
    assert "/target/etc/apt/apt.conf.d/90curtin-aptproxy" in \
        config["late-commands"][0]
    kept = yaml.safe_load(autoinstall.autoinstall(
        template, dict(PROXIES, proxy_persist=True))[0])["autoinstall"]
    assert kept["proxy"] == "http://proxy.example:3128/"
    assert "90curtin-aptproxy" not in kept["late-commands"][0]
    assert "proxy" not in yaml.safe_load(autoinstall.autoinstall(
        template)[0])["autoinstall"]


def _customized(os_name, proxy, original=None):
    template = parse_template(f"""<template><name>t</name>
  <os><name>{os_name}</name><version>1</version><arch>x86_64</arch>
    <install type="url"><url>http://m.example/</url></install></os>
  <packages><package name="hello"/></packages></template>""")
    failures = {} if original is not None else {
        name: (1, "") for name in ("read /etc/dnf/dnf.conf",
                                   "read /etc/yum.conf",
                                   "read /etc/sysconfig/proxy")}
    guest = FakeGuest(failures)
    if original is not None:
        guest.run = _reads(guest.run, original)
    cz.customize(guest, template, LOG, proxy=proxy)
    return guest


def _reads(run, content):
    def reading(command, privileged=True, check=True, timeout=None, name=None,
                merge_stderr=True):
        run(command, privileged, check, timeout, name, merge_stderr)
        return (0, content) if name.startswith("read ") else (0, "")
    return reading


PROXY = proxy_mod.Proxy("http://p.example:3128/", None, ("repo.local",))


def test_apt_proxy_set_first_and_removed_last():
    guest = _customized("Debian", PROXY)
    path = "/etc/apt/apt.conf.d/90imgfac-nova-proxy"
    assert guest.names()[0] == path
    assert guest.put_data(path) == (
        b'Acquire::http::Proxy "http://p.example:3128/";\n'
        b'Acquire::http::Proxy::repo.local "DIRECT";\n')
    assert guest.calls[-1][1:3] == ("remove proxy settings",
                                    "rm -f " + path)
    kept = _customized("Debian", proxy_mod.Proxy("http://p:1/", persist=True))
    assert "remove proxy settings" not in kept.names()


def test_dnf_proxy_in_main_and_original_written_back():
    original = "[main]\ngpgcheck=1\nproxy=http://old:1/\n"
    guest = _customized("Fedora", PROXY, original)
    puts = [c for c in guest.calls if c[0] == "put"]
    assert [p[1] for p in puts] == ["/etc/dnf/dnf.conf"] * 2
    assert puts[0][2] == b"[main]\nproxy=http://p.example:3128/\ngpgcheck=1\n"
    assert puts[1][2] == original.encode()


def test_zypper_sysconfig_proxy_created_and_removed():
    guest = _customized("openSUSE", PROXY)
    assert guest.put_data("/etc/sysconfig/proxy") == (
        b'PROXY_ENABLED="yes"\nHTTP_PROXY="http://p.example:3128/"\n'
        b'HTTPS_PROXY="http://p.example:3128/"\nNO_PROXY="repo.local"\n')
    assert guest.calls[-1][2] == "rm -f /etc/sysconfig/proxy"


def test_jump_host_with_the_agents_keys(sshd_server, client_key, tmp_path,
                                        monkeypatch):
    socket_path = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path],
                             stdout=subprocess.DEVNULL)
    try:
        key_path = str(tmp_path / "id")
        client_key.write_private_key_file(key_path)
        monkeypatch.setenv("SSH_AUTH_SOCK", socket_path)
        poll.wait_for(lambda: subprocess.run(
            ["ssh-add", "-q", key_path],
            stderr=subprocess.DEVNULL).returncode == 0, 5,
            "ssh-agent to take the key", interval=0.1)
        jump = jump_host.jump_host("root@127.0.0.1:%d" % sshd_server.port,
                                   agent=True)
        assert jump.pkey is None
        with _guest(sshd_server, client_key, "any", jump=jump) as guest:
            guest.wait_until_reachable(10)
            assert guest.run("echo via-agent")[1] == "via-agent\n"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "none"))
        with pytest.raises(ValueError, match="the SSH agent has no keys"):
            jump_host.jump_host("jump", agent=True)
    finally:
        agent.terminate()
        agent.wait()


def test_the_record_says_how_the_guest_was_reached():
    from imgfac_nova.plugins import common
    recorded = {}
    build = types.SimpleNamespace(
        set_properties=recorded.update)
    common.record_ssh(build, {
        "address": "[2001:db8::5]:22", "jump_host": "ops@bastion:22",
        "policy": "console", "fingerprint": "SHA256:abc", "checked": False,
        "key_type": "ssh-ed25519",
        "warning": "the console showed no SSH host keys within 60 s; "
                   "accepted the first key offered"})
    assert recorded == {
        "ssh_address": "[2001:db8::5]:22", "ssh_jump_host": "ops@bastion:22",
        "ssh_host_key_policy": "console",
        "ssh_host_key_fingerprint": "SHA256:abc",
        "ssh_host_key_checked": False,
        "ssh_host_key_warning": "the console showed no SSH host keys within "
                                "60 s; accepted the first key offered"}
    recorded.clear()
    common.record_ssh(build, {"policy": "console", "checked": True,
                              "source": "build", "fingerprint": "SHA256:k"})
    assert recorded == {"ssh_host_key_policy": "console",
                        "ssh_host_key_checked": True,
                        "ssh_host_key_source": "build",
                        "ssh_host_key_fingerprint": "SHA256:k"}

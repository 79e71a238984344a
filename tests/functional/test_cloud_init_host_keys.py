"""Host keys the build gives its guest, checked against Debian's real
cloud-init in the test cloud.

The test guest carries cloud-init switched off; an install script's %post
switches it on (tools/testcloud/guest-files: imgfac-cloud-init enable).
Then, as on a real cloud image, cloud-init sets up the customization
server from its config drive, writes the host key the build gave it in the
user data (ssh_keys) before sshd starts, and prints the keys on the console
only after sshd answers.
"""
import json
import os
import re

import pytest

from tests import poll
from tests.functional import builds

CLOUD_INIT_SCRIPT = ("# install the test guest with Debian's cloud-init on\n"
                     "%post\n"
                     "/usr/local/sbin/imgfac-cloud-init enable\n"
                     "%end\n"
                     "poweroff\n")

#: What the customization shows of the guest: that cloud-init set up this
#: instance, the fingerprint of the key sshd serves, and how many host keys
#: there are.
SHOW_KEYS = ("test -L /var/lib/cloud/instance || exit 1; "
             "echo cloud-init set it up; "
             "ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub; "
             "echo host keys: $(ls /etc/ssh | grep -c '^ssh_host_.*_key$')")


def _ssh_rules(conn, build_id):
    """(remote_ip_prefix, ethertype, ports) of the build's own group's
    rules, or None before the group has its SSH rule."""
    name = "imgfac-nova-%s-ssh" % build_id
    for group in conn.network.security_groups(name=name):
        rules = [(r.remote_ip_prefix, r.ether_type,
                  (r.port_range_min, r.port_range_max))
                 for r in conn.network.security_group_rules(
                     security_group_id=group.id)
                 if r.direction == "ingress"]
        return rules or None
    return None


@pytest.mark.slow  # its own install: 4-7 minutes of TCG on two shared cores
def test_cloud_init_guest_gets_its_host_key_from_the_build(
        cloud_env, setup, conn, admin_conn):
    """ssh_host_keys build, ssh_host_key_policy strict: cloud-init serves
    the build's key, so SSH is checked against it at once and the build is
    COMPLETE; the key sshd serves is the one recorded, the only one; the
    build's security group lets SSH in from this host (127.0.0.1) alone;
    no private key in the log or the record."""
    config, store, tmp = setup
    script = builds.write_script(tmp, CLOUD_INIT_SCRIPT)
    log = open(tmp / "build.log", "w")
    proc = builds.start(
        config, "base_image", *builds.NOVA_PARAMS, *builds.FRESH_INSTALL,
        "--file-parameter", "install_script", script,
        "--parameter", "ssh_host_keys", "build",
        "--parameter", "ssh_host_key_policy", "strict",
        builds.write_template(tmp, command=SHOW_KEYS), env=cloud_env,
        stderr=log)
    try:
        build_id = builds.wait_for_record(proc, store,
                                          lambda r: True)["identifier"]
        rules = poll.wait_for(lambda: _ssh_rules(conn, build_id), 1500,
                              "the build's SSH rule", interval=3)
        out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert rules == [("127.0.0.1/32", "IPv4", (22, 22))]
    assert proc.returncode == 0, open(tmp / "build.log").read()[-3000:]
    image = json.loads(out)
    props = image["properties"]
    assert image["status"] == "COMPLETE"
    assert props["ssh_host_key_source"] == "build"
    assert props["ssh_host_key_checked"] is True
    assert props["ssh_host_key_policy"] == "strict"
    assert "ssh_host_key_warning" not in props
    build_log = open(os.path.join(store, build_id + ".log")).read()
    assert "[mark] cloud-init set it up" in build_log
    served = re.search(r"\[mark\] 256 (SHA256:\S+) ", build_log).group(1)
    assert served == props["ssh_host_key_fingerprint"]
    assert "[mark] host keys: 1" in build_log
    assert "PRIVATE KEY" not in build_log
    assert "PRIVATE KEY" not in builds.record_text(store, build_id)
    glance_id = props["x-image-properties-glance_id"]
    try:
        assert builds.cloud_left(admin_conn, build_id) == [
            ("image", conn.image.get_image(glance_id).name)]
    finally:
        builds.imgfac(config, "delete", build_id, env=cloud_env)


@pytest.mark.usefixtures("nova_base_image")  # its JEOS: this build reuses it
def test_a_guest_offering_another_key_fails_in_one_line(cloud_env, setup,
                                                        admin_conn):
    """ssh_host_keys build with the plain test guest (no cloud-init: it
    makes its own host keys): the build fails at the first SSH answer, in
    one line naming both fingerprints, and leaves nothing."""
    config, store, tmp = setup
    result = builds.imgfac(
        config, "base_image",
        *builds.with_install_script(builds.NOVA_PARAMS, tmp),
        "--parameter", "ssh_host_keys", "build",
        builds.write_template(tmp), env=cloud_env)
    assert result.returncode == 1, result.stderr[-3000:]
    image = builds.record(result)
    error = image["status_detail"]["error"]
    assert "\n" not in error
    found = re.search(
        r"SSH host key of \S+:22 is not the one the build gave the guest: "
        r"the server offered ssh-ed25519 (SHA256:\S+), expected "
        r"(SHA256:\S+)$", error)
    assert found, error
    assert found.group(1) != found.group(2)
    assert builds.cloud_left(admin_conn, image["identifier"]) == []

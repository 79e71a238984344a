"""The openstack target made in the cloud: the in-guest removal of the
machine identity (run by a real shell on a directory tree), when a target
is made in the cloud, the pipeline's last step before the power-off, and
delete of a Glance image a target and its push share."""
import os
import subprocess

import pytest

from imgfac_nova import build
from imgfac_nova import cleanup
from imgfac_nova import images
from imgfac_nova import store
from imgfac_nova.plugins import local
from imgfac_nova.plugins import nova as nova_plugin
from imgfac_nova.plugins import openstack
from imgfac_nova.plugins import provider
from imgfac_nova.plugins import provider_access
from novaimagebuilder.guest import sysprep

#: A system's files: those that are its identity, and others that stay.
IDENTITY = {
    "etc/ssh/ssh_host_ed25519_key": "PRIVATE",
    "etc/ssh/ssh_host_ecdsa_key.pub": "ecdsa-sha2-nistp256 AAAA",
    "root/.ssh/authorized_keys": "ssh-ed25519 AAAA root",
    "home/debian/.ssh/authorized_keys": "ssh-ed25519 AAAA build",
    "home/debian/.bash_history": "sudo poweroff\n",
    "root/.bash_history": "ls\n",
    "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
    "etc/udev/rules.d/70-persistent-net.rules": "SUBSYSTEM==net\n",
    "var/log/syslog": "boot\n",
    "var/log/apt/history.log": "install hello\n",
    "var/log/cloud-init.log": "init\n",
    "var/lib/cloud/instances/i-1/obj.pkl": "state",
    "var/lib/cloud/instance": "i-1",
    "var/lib/cloud/data/instance-id": "i-1",
    "var/lib/cloud/sem/config_ssh": "ran",
    "var/lib/dhcp/dhclient.eth0.leases": "lease {}\n",
    "var/lib/NetworkManager/internal-eth0.lease": "ADDRESS=10.0.0.5\n",
    "tmp/.X0-lock": "1", "tmp/build/file": "x", "var/tmp/work": "y",
    "run/utmp": "u",
    "var/cache/apt/archives/hello_2.10_amd64.deb": "deb",
    "var/cache/apt/pkgcache.bin": "bin",
    "var/cache/dnf/fedora/repomd.xml": "xml",
}
KEPT = {
    "etc/ssh/sshd_config": "PasswordAuthentication no\n",
    "etc/hostname": "debian\n",
    "home/debian/.profile": "PATH=$PATH\n",
    "var/lib/cloud/seed/nocloud/meta-data": "local seed\n",
    "var/cache/apt/archives/partial/.keep": "",
    "usr/bin/hello": "binary",
}


def _tree(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as handle:
            handle.write(text)


def _files(root):
    return {os.path.relpath(os.path.join(directory, name), root)
            for directory, _, names in os.walk(root) for name in names}


def test_guest_script_removes_the_identity_and_nothing_else(tmp_path):
    root = str(tmp_path / "root with space")
    _tree(root, dict(IDENTITY, **KEPT))
    _tree(root, {"etc/machine-id": "0123456789abcdef0123456789abcdef\n",
                 "etc/sysconfig/network-scripts/ifcfg-eth0":
                     "DEVICE=eth0\nHWADDR=52:54:00:12:34:56\nBOOTPROTO=dhcp\n"})
    result = subprocess.run(["sh", "-c", sysprep.guest_script(root)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _files(root) == set(KEPT) | {
        "etc/machine-id", "etc/sysconfig/network-scripts/ifcfg-eth0"}
    for path, text in KEPT.items():
        with open(os.path.join(root, path)) as handle:
            assert handle.read() == text
    with open(os.path.join(root, "etc/machine-id")) as handle:
        assert handle.read() == ""  # emptied: systemd's first boot
    with open(os.path.join(root, "etc/sysconfig/network-scripts/"
                           "ifcfg-eth0")) as handle:
        assert handle.read() == "DEVICE=eth0\nBOOTPROTO=dhcp\n"
    assert os.path.isdir(os.path.join(root, "var/log/apt"))
    assert os.listdir(os.path.join(root, "tmp")) == []


def test_guest_script_on_a_system_without_those_files(tmp_path):
    root = str(tmp_path / "bare")
    _tree(root, {"etc/hostname": "x\n"})
    result = subprocess.run(["sh", "-c", sysprep.guest_script(root)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _files(root) == {"etc/hostname"}


def test_guest_steps_match_virt_sysprep_operations():
    """Each piece of identity the offline path removes, the guest removes
    too (virt-sysprep's customize operation is its --delete of the
    cloud-init state)."""
    assert set(sysprep.GUEST_STEPS) == \
        set(sysprep.OPERATIONS) - {"customize"} | {"cloud-init"}


# -- when the openstack target is made in the cloud ---------------------------

def _base(plugin, **fields):
    return images.ImageRecord(type=images.BASE_IMAGE, plugin=plugin,
                              status=images.COMPLETE, **fields)


NOVA = nova_plugin.NovaOS()
LOCAL = local.LocalOS()
NOVA_BASE = _base("nova", properties={images.GLANCE_ID_PROPERTY: "g-1"})
LOCAL_BASE = _base("local", data="/store/b.body")
CHAIN_BASE = images.ImageRecord(type=images.BASE_IMAGE, plugin="nova")


@pytest.mark.parametrize("base,os_plugin,parameters,expected", [
    (NOVA_BASE, NOVA, {}, True),
    (CHAIN_BASE, NOVA, {}, True),  # --template: the base is still to come
    (NOVA_BASE, NOVA, {"in_cloud": True}, True),
    (NOVA_BASE, NOVA, {"in_cloud": False}, False),
    (NOVA_BASE, NOVA, {"image_format": "raw"}, False),
    (NOVA_BASE, NOVA, {"image_format": "qcow2", "in_cloud": False}, False),
    (LOCAL_BASE, LOCAL, {}, False),
    (LOCAL_BASE, LOCAL, {"in_cloud": False}, False),
    (_base("nova"), NOVA, {}, False),  # complete, but no Glance image
    (NOVA_BASE, None, {}, False),  # its OS plugin is not installed
])
def test_in_cloud_selection(base, os_plugin, parameters, expected):
    assert openstack.OpenStack().in_cloud(base, os_plugin,
                                          parameters) is expected


@pytest.mark.parametrize("base,os_plugin,parameters,message", [
    (LOCAL_BASE, LOCAL, {"in_cloud": True},
     "in_cloud needs a base image built in Nova; base image %s was built "
     "by the local plugin" % LOCAL_BASE.identifier),
    (NOVA_BASE, NOVA, {"in_cloud": True, "image_format": "qcow2"},
     "in the cloud the image keeps the format of Nova's snapshot: leave "
     "image_format out, or set in_cloud false to convert a download"),
], ids=["local-base", "nova-base-with-format"])  # (the same in every process)
def test_in_cloud_that_cannot_be(base, os_plugin, parameters, message):
    with pytest.raises(provider_access.ProviderError) as raised:
        openstack.OpenStack().in_cloud(base, os_plugin, parameters)
    assert str(raised.value) == message


def test_other_cloud_plugins_never_work_in_the_cloud():
    from imgfac_nova.plugins import formats
    assert formats.DiskFormats().in_cloud(NOVA_BASE, NOVA, {}) is False


# -- delete: a Glance image a target and its push share -----------------------

@pytest.fixture
def shared(plugin_site, tmp_path):
    """A target image whose "Glance image" is a file, and a provider image
    that was handed that same image (the test cloud plugin)."""
    image_store = store.ImageStore(str(tmp_path / "store"))
    glance_image = tmp_path / "glance-image"
    glance_image.write_text("bytes")
    target = images.ImageRecord(
        type=images.TARGET_IMAGE, plugin="filecloud", target="filecopy",
        status=images.COMPLETE,
        properties={images.GLANCE_ID_PROPERTY: str(glance_image)})
    pushed = images.ImageRecord(
        type=images.PROVIDER_IMAGE, plugin="filecloud", target="filecopy",
        status=images.COMPLETE, target_image_id=target.identifier,
        provider=str(tmp_path), identifier_on_provider=str(glance_image))
    for record in (target, pushed):
        image_store.add(record)
    return build.Builder(None, image_store), target, pushed, glance_image


@pytest.mark.parametrize("first", ["target", "pushed"])
def test_shared_glance_image_goes_with_the_last_holder(shared, first):
    builder, target, pushed, glance_image = shared
    order = [target, pushed] if first == "target" else [pushed, target]
    assert cleanup.delete(builder, order[0].identifier, {}).status == images.DELETED
    assert glance_image.exists()  # the other image holds it still
    assert cleanup.delete(builder, order[1].identifier, {}).status == images.DELETED
    assert not glance_image.exists()
    assert builder.store.list() == []


# -- what keeps a same-cloud push from handing the target's image over --------

GLANCE_IMAGE = {"name": "imgfac-nova-t1", "visibility": "private",
                "container_format": "bare", "min_disk": 4, "min_ram": 0}


@pytest.mark.parametrize("where,parameters,expected", [
    ("@mycloud", {}, []),
    ("@mycloud", {"image_name": "imgfac-nova-t1"}, []),
    ("@mycloud", {"image_name": "debian-12"}, ["name"]),
    ('{"auth_url": "http://k/v3"}', {}, []),
    ('{"auth_url": "http://k/v3", "min_disk": 4, "container_format": '
     '"bare", "is_public": false}', {}, []),
    ('{"auth_url": "http://k/v3", "is_public": true}', {}, ["visibility"]),
    ('{"auth_url": "http://k/v3", "visibility": "community", "min_ram": 512,'
     ' "min_disk": 10, "container_format": "ova"}', {},
     ["container_format", "min_disk", "min_ram", "visibility"]),
])
def test_what_a_push_asks_otherwise(where, parameters, expected):
    assert provider.asked_otherwise(
        GLANCE_IMAGE, provider_access.parse_provider(where), parameters) == expected

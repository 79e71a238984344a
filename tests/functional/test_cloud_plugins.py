"""Cloud plugins on the test cloud: target images (openstack, vmdk, ova) from
one shared local base image, pushed to Glance as the non-admin user and to a
second project through Image Factory's provider JSON and credentials XML.

Real builds are few and shared (session fixtures): the session's local base
image (conftest), one openstack target (virt-sysprep, ~30 s), one push; and
the openstack target of the session's Nova base made in the cloud (one boot
in Nova), handed over to its own project and copied to a second one.
"""
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid

import pytest
from lxml import etree

from tests import poll
from tests import scs_0102
from tests.functional import builds
from tests.functional import databases
from tests.functional import guestcheck

from novaimagebuilder import cloud

KEYSTONE = "http://127.0.0.1:5000/v3"
GLANCE_PORT = 9292


@pytest.fixture(scope="session")
def env(test_cloud):
    """No cloud configured for builds (so: the local plugin), but clouds.yaml
    is there for @CLOUD providers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = builds.REPO
    env["OS_CLIENT_CONFIG_FILE"] = test_cloud.clouds_yaml
    return env


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, local_base_image):
    """The store of the session's local base image, and a scratch directory."""
    directory = tmp_path_factory.mktemp("cloudplugins")
    return local_base_image.config, local_base_image.store, directory


def _run(workspace, env, *args, timeout=1800):
    config, _, _ = workspace
    started = time.monotonic()
    result = builds.imgfac(config, *args, env=env, timeout=timeout)
    result.seconds = time.monotonic() - started
    return result


def _complete(result):
    assert result.returncode == 0, result.stderr[-3000:]
    image = builds.record(result)
    assert image["status"] == "COMPLETE", image["status_detail"]
    return image


@pytest.fixture(scope="session")
def base(local_base_image):
    return local_base_image.record


@pytest.fixture(scope="session")
def openstack_target(workspace, env, base):
    result = _run(workspace, env, "target_image", "--id", base["identifier"],
                  "openstack")
    image = _complete(result)
    size = os.path.getsize(image["data"])
    print("openstack target: %.1f s (%d MiB, sysprep %s)" % (
        result.seconds, size // 2 ** 20, image["timings"].get("sysprep")))
    return image


def _sha512(path):
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def pushed(workspace, env, openstack_target, conn):
    result = _run(workspace, env, "provider_image", "openstack",
                  "@imgfac-test", "-", "--id", openstack_target["identifier"])
    image = _complete(result)
    size = os.path.getsize(openstack_target["data"])
    print("push to @imgfac-test: %.1f s, %.1f MiB/s" % (
        result.seconds, size / 2 ** 20 / result.seconds))
    yield image
    conn.image.delete_image(image["identifier_on_provider"],
                            ignore_missing=True)


@pytest.fixture(scope="session")
def second_project(admin_conn):
    """A second project with its own member user, made for these tests."""
    suffix = uuid.uuid4().hex[:8]
    project = admin_conn.identity.create_project(
        name="imgfac-ft-alt-" + suffix, domain_id="default")
    password = uuid.uuid4().hex
    user = admin_conn.identity.create_user(
        name="imgfac-ft-alt-" + suffix, password=password,
        domain_id="default", default_project_id=project.id)
    member = admin_conn.identity.find_role("member")
    admin_conn.identity.assign_project_role_to_user(project, user, member)
    yield {"project": project, "user": user, "password": password}
    for image in admin_conn.image.images(owner=project.id):
        admin_conn.image.delete_image(image.id, ignore_missing=True)
    admin_conn.identity.delete_user(user.id, ignore_missing=True)
    admin_conn.identity.delete_project(project.id, ignore_missing=True)


CREDENTIALS = """<?xml version="1.0"?>
<provider_credentials>
  <openstack_credentials>
    <username>{user}</username>
    <password>{password}</password>
    <tenant>{project}</tenant>
    <auth_url>{auth_url}</auth_url>
    <strategy>keystone</strategy>
    <user_domain_name>Default</user_domain_name>
    <project_domain_name>Default</project_domain_name>
  </openstack_credentials>
</provider_credentials>
"""


def _credentials(directory, project, password=None):
    path = os.path.join(str(directory), "creds-%s.xml" % uuid.uuid4().hex[:6])
    with open(path, "w") as handle:
        handle.write(CREDENTIALS.format(
            user=project["user"].name, password=password or
            project["password"], project=project["project"].name,
            auth_url=KEYSTONE))
    return path


def _images_of(admin_conn, project):
    return sorted(i.id for i in admin_conn.image.images(owner=project.id))


def _store_text(store):
    """The store's records (as JSON) and build logs."""
    text = "".join(builds.record_text(store, identifier)
                   for identifier in builds.records(store))
    for name in os.listdir(store):
        if name.endswith(".log"):
            with open(os.path.join(store, name)) as handle:
                text += handle.read()
    return text


def _files(disk):
    """The files under /etc/ssh and /home in ``disk`` (guestfish, read-only)."""
    result = subprocess.run(
        ["guestfish", "--ro", "-a", disk, "-i", "find", "/etc/ssh", ":",
         "echo", "END-OF-ETC-SSH", ":", "find", "/home"],
        capture_output=True, text=True,
        env=dict(os.environ, LIBGUESTFS_BACKEND="direct",
                 LIBGUESTFS_BACKEND_SETTINGS="force_tcg"))
    assert result.returncode == 0, result.stderr
    etc, _, home = result.stdout.partition("END-OF-ETC-SSH\n")
    return {"/etc/ssh" + f for f in etc.splitlines()} | {
        "/home" + f for f in home.splitlines()}


# -- the openstack target and the push as the non-admin user -------------------

def test_openstack_target_has_nova_properties_and_no_identity(
        openstack_target, base):
    props = openstack_target["properties"]
    assert props["disk_format"] == "qcow2"
    glance = props["glance_properties"]
    assert {key: glance[key] for key in (
        "os_distro", "os_version", "os_type", "architecture", "hw_disk_bus",
        "hw_vif_model", "image_original_user", "image_source")} == {
        "os_distro": "debian", "os_version": "12", "os_type": "linux",
        "architecture": "x86_64", "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio", "image_original_user": "debian",
        "image_source": "private"}
    assert "hw_firmware_type" not in glance  # a BIOS build
    assert props["min_disk"] == 2
    assert props["min_ram"] == base["parameters"]["memory"]
    assert openstack_target["base_image_id"] == base["identifier"]
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output", "json", openstack_target["data"]],
        capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    # What virt-sysprep removed, read back from the images themselves.
    before, after = _files(base["data"]), _files(openstack_target["data"])
    assert "/etc/ssh/ssh_host_ed25519_key" in before
    assert "/home/debian/.ssh/authorized_keys" in before
    assert not [f for f in after if f.startswith("/etc/ssh/ssh_host_")]
    assert "/home/debian/.ssh/authorized_keys" not in after
    assert "/etc/ssh/sshd_config" in after


def test_push_to_test_cloud_is_active_with_our_hash(pushed, openstack_target,
                                                    conn):
    image = conn.image.get_image(pushed["identifier_on_provider"])
    assert image.status == "active"
    assert image.hash_algo == "sha512"
    assert image.hash_value == _sha512(openstack_target["data"])
    assert pushed["properties"]["os_hash_value"] == image.hash_value
    assert image.disk_format == "qcow2" and image.container_format == "bare"
    assert image.os_distro == "debian" and image.os_version == "12"
    assert image.hw_disk_bus == "virtio" and image.hw_vif_model == "virtio"
    assert image.architecture == "x86_64"
    assert image.properties["imgfac_build_id"] == pushed["identifier"]
    assert image.properties["imgfac_role"] == "image"
    assert image.min_disk == 2
    assert scs_0102.glance_offences(image) == []
    assert pushed["provider"] == "@imgfac-test"
    assert pushed["provider_account_identifier"] == "imgfac/imgfac"
    assert pushed["target_image_id"] == openstack_target["identifier"]


def test_pushed_image_boots_with_the_customization(pushed, conn):
    with guestcheck.booted_in_cloud(
            conn, pushed["identifier_on_provider"]) as guest:
        assert guest.run("cat /etc/imgfac-ft.txt")[1].strip() == \
            "made by imgfac-nova"
        assert guest.run("cat /var/lib/imgfac-ft-mark")[1].strip() == \
            "customized"
        assert guest.run("hello")[1].strip() == "Hello, world!"


# -- format targets ---------------------------------------------------------------

@pytest.fixture(params=[
    pytest.param("local", marks=pytest.mark.xdist_group("local-builds")),
    pytest.param("nova", marks=pytest.mark.xdist_group("nova-builds"))])
def any_base(request, env):
    """A base image of each backend: ``(config, env, record, virtual size)``;
    the Nova base's bytes are in Glance (its disk is the flavor's). Each
    asks only for its own session base, and runs with the other builds of
    its backend (see conftest)."""
    if request.param == "local":
        local = request.getfixturevalue("local_base_image")
        return local.config, env, local.record, 2 * 1024 ** 3
    nova = request.getfixturevalue("nova_base_image")
    conn = request.getfixturevalue("conn")
    flavor = conn.compute.get_flavor(builds.NOVA_PARAMS[2])
    return (nova.config, request.getfixturevalue("cloud_env"), nova.record,
            flavor.disk * 1024 ** 3)


def test_vmdk_and_ova_targets(any_base):
    config, env, base, size = any_base

    def target(*args):
        started = time.monotonic()
        image = _complete(builds.imgfac(config, "target_image", "--id",
                                        base["identifier"], *args, env=env))
        print("%s target: %.1f s" % (args[-1], time.monotonic() - started))
        return image

    vmdk = target("vmdk")
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output", "json", vmdk["data"]],
        capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    assert info["virtual-size"] == size

    ova = target("--parameter", "memory", "2048", "ova")
    assert ova["properties"]["container_format"] == "ova"
    with tarfile.open(ova["data"]) as tar:
        names = tar.getnames()
        assert names[0].endswith(".ovf") and names[2].endswith(".mf")
        root = etree.fromstring(tar.extractfile(names[0]).read())
        tar.extract(names[1], path=os.path.dirname(ova["data"]),
                    filter="data")
    disk = os.path.join(os.path.dirname(ova["data"]), names[1])
    try:
        inner = json.loads(subprocess.run(
            ["qemu-img", "info", "--output", "json", disk],
            capture_output=True, text=True, check=True).stdout)
    finally:
        os.unlink(disk)
    assert inner["format-specific"]["data"]["create-type"] == \
        "streamOptimized"
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
          "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
                  "CIM_ResourceAllocationSettingData"}
    disk_element = root.find("ovf:DiskSection/ovf:Disk", ns)
    assert disk_element.get("{%s}capacity" % ns["ovf"]) == str(size)
    memory = [i for i in root.iterfind(".//ovf:Item", ns)
              if i.findtext("rasd:ResourceType", namespaces=ns) == "4"]
    assert memory[0].findtext("rasd:VirtualQuantity", namespaces=ns) == "2048"


# -- target content (Image Factory's target_content.xml) -----------------------

#: For qcow2 targets of Debian: the test cloud's repository again (the
#: base's was not persisted), a package, a file and a command.
TARGET_CONTENT = """<template_includes>
  <include target="vmdk"><packages><package name="nowhere"/></packages>
  </include>
  <include target="qcow2" os="Debian">
    <repositories>
      <repository name="test-cloud-local">
        <url>http://10.0.2.2:8090/repo/</url>
        <signed>no</signed><persisted>no</persisted>
      </repository>
    </repositories>
    <packages><package name="figlet"/></packages>
    <files><file name="/etc/imgfac-target">qcow2 target</file></files>
    <commands>
      <command name="mark">command -v figlet > /var/lib/imgfac-target.txt
      </command>
    </commands>
  </include>
</template_includes>
"""


def _content_config(workspace, text):
    """A configuration for the workspace's store naming a target content
    file holding ``text``."""
    _, store, directory = workspace
    content = os.path.join(str(directory), "target_content.xml")
    with open(content, "w") as handle:
        handle.write(text)
    config = os.path.join(str(directory), "target-content.conf")
    with open(config, "w") as handle:
        handle.write("[DEFAULT]\nstorage_path = %s\ntarget_content_file = "
                     "%s\n" % (store, content))
        handle.write(databases.config_section(store))
    return config, content


def _cat(disk, *paths):
    """The files ``paths`` of ``disk`` (guestfish, read-only); None for a
    file that is not there."""
    found = {}
    for path in paths:
        result = subprocess.run(
            ["guestfish", "--ro", "-a", disk, "-i", "cat", path],
            capture_output=True, text=True,
            env=dict(os.environ, LIBGUESTFS_BACKEND="direct",
                     LIBGUESTFS_BACKEND_SETTINGS="force_tcg"))
        # (guestfish ends what it prints with a newline of its own)
        found[path] = result.stdout[:-1] if result.returncode == 0 else None
    return found


def _icicle_packages(image):
    """Package names of the image's ICICLE (entries are name_version_arch)."""
    return {p.get("name").split("_")[0] for p in etree.fromstring(
        image["icicle"].encode()).iter("package")}


@pytest.mark.slow  # a whole customization boot of the base under TCG (~5 min)
def test_target_content_goes_into_the_target_only(workspace, env, base):
    config, _ = _content_config(workspace, TARGET_CONTENT)
    started = time.monotonic()
    result = builds.imgfac(config, "target_image", "--id",
                           base["identifier"], "qcow2", env=env)
    image = _complete(result)
    print("qcow2 target with target content: %.1f s (%s)" % (
        time.monotonic() - started, image["timings"]))
    assert "figlet" in _icicle_packages(image)
    assert "figlet" not in _icicle_packages(base)
    assert "hello" in _icicle_packages(image)  # the base's own stay
    files = ("/etc/imgfac-target", "/var/lib/imgfac-target.txt",
             "/etc/apt/sources.list.d/test-cloud-local.list")
    target, before = _cat(image["data"], *files), _cat(base["data"], *files)
    assert target[files[0]] == "qcow2 target"
    assert target[files[1]] == "/usr/bin/figlet\n"  # after the packages
    assert target[files[2]] is None  # not persisted: removed again
    assert before == dict.fromkeys(files)
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output", "json", image["data"]],
        capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    with open(image["log"]) as handle:
        log = handle.read()
    assert "Booting the base image to customize it" in log
    # The log's percentages are the record's: the customization's own
    # progress is mapped into 5..19 % of the target build.
    shown = [(int(m.group(1)), m.group(2)) for m in re.finditer(
        r" INFO imgfac_nova\.build (\d+)% (.*)", log)]
    assert [p for p, _ in shown] == sorted(p for p, _ in shown)
    assert 5 <= dict((a, p) for p, a in shown)[
        "Booting the base image to customize it"] <= 19


@pytest.mark.slow  # a customization boot in Nova; the local one covers it
def test_target_content_of_a_nova_built_base(nova_base_image, cloud_env,
                                             tmp_path, conn):
    base = nova_base_image.record
    config, _ = _content_config(
        (None, nova_base_image.store, tmp_path), TARGET_CONTENT)
    started = time.monotonic()
    image = _complete(builds.imgfac(config, "target_image", "--id",
                                    base["identifier"], "qcow2",
                                    env=cloud_env))
    print("qcow2 target of the Nova base with target content: %.1f s"
          % (time.monotonic() - started))
    assert "figlet" in _icicle_packages(image)
    assert "figlet" not in _icicle_packages(base)
    found = _cat(image["data"], "/etc/imgfac-target",
                 "/var/lib/imgfac-target.txt")
    assert found == {"/etc/imgfac-target": "qcow2 target",
                     "/var/lib/imgfac-target.txt": "/usr/bin/figlet\n"}
    # the server and the snapshot made for it are gone again
    tag = image["identifier"]
    assert not [i for i in conn.image.images()
                if i.properties.get("imgfac_build_id") == tag]
    assert not [v for v in conn.compute.servers() if tag in v.name]


def test_a_bad_target_content_file_is_one_line_and_creates_nothing(
        workspace, env, base):
    _, store, _ = workspace
    config, content = _content_config(
        workspace, "<template_includes>\n<include target='qcow2'>\n"
        "<packages><pkg/></packages></include></template_includes>\n")
    before = sorted(os.listdir(store))
    result = builds.imgfac(config, "target_image", "--id",
                           base["identifier"], "qcow2", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "imgfac-nova: error: %s:3: unexpected element <pkg> in <packages>; "
        "allowed here: <package>" % content]
    assert sorted(os.listdir(store)) == before


# -- Image Factory provider JSON and credentials XML, a second project ----------

def test_push_to_second_project_and_delete(workspace, env, openstack_target,
                                           second_project, admin_conn):
    config, store, directory = workspace
    provider = json.dumps({"glance-host": "127.0.0.1",
                           "glance-port": GLANCE_PORT, "auth_url": KEYSTONE,
                           "is_public": False, "min_ram": 256})
    credentials = _credentials(directory, second_project)
    image = _complete(_run(workspace, env, "provider_image", "openstack",
                           provider, credentials, "--id",
                           openstack_target["identifier"]))
    glance_id = image["identifier_on_provider"]
    assert _images_of(admin_conn, second_project["project"]) == [glance_id]
    found = admin_conn.image.get_image(glance_id)
    assert found.status == "active" and found.min_ram == 256
    assert found.visibility == "private"
    assert found.hash_value == _sha512(openstack_target["data"])
    assert image["provider_account_identifier"] == "%s/%s" % (
        second_project["user"].name, second_project["project"].name)
    assert json.loads(image["provider"])["glance-host"] == "127.0.0.1"
    password = second_project["password"]
    assert password not in _store_text(store)
    assert password not in json.dumps(found.to_dict())

    deleted = _run(workspace, env, "delete", image["identifier"],
                   "--credentials", credentials)
    assert deleted.returncode == 0, deleted.stderr
    assert _images_of(admin_conn, second_project["project"]) == []


def test_refused_credentials_create_nothing(workspace, env, openstack_target,
                                            second_project, admin_conn):
    config, store, directory = workspace
    before = sorted(os.listdir(store))
    credentials = _credentials(directory, second_project,
                               password="not-the-password")
    result = _run(workspace, env, "provider_image", "openstack",
                  json.dumps({"auth_url": KEYSTONE}), credentials, "--id",
                  openstack_target["identifier"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "imgfac-nova: error: the provider %s: the cloud refused the "
        "credentials (HTTP 401)" % KEYSTONE]
    assert sorted(os.listdir(store)) == before
    assert _images_of(admin_conn, second_project["project"]) == []


def test_unreachable_glance_creates_nothing(workspace, env, openstack_target,
                                            second_project, admin_conn):
    config, store, directory = workspace
    before = sorted(os.listdir(store))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = _run(workspace, env, "provider_image", "openstack", json.dumps(
        {"auth_url": KEYSTONE, "glance-host": "127.0.0.1",
         "glance-port": port}), _credentials(directory, second_project),
        "--id", openstack_target["identifier"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "imgfac-nova: error: the provider's Glance (http://127.0.0.1:%d) "
        "cannot be reached: " % port), lines
    assert sorted(os.listdir(store)) == before


class CuttingProxy:
    """A TCP proxy to Glance that drops the connection of any image data
    upload (stage or file; the first ``times`` ones when given) after
    ``limit`` bytes of it (a Glance failure in the middle of an upload, as
    the client sees it), or only slows uploads down to ``pace`` seconds per
    64 KiB."""

    def __init__(self, limit=4 * 2 ** 20, pace=0.0, times=None):
        self.limit, self.times = limit, times
        self.pace = pace
        self.cut = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,),
                             daemon=True).start()

    def _serve(self, client):
        upstream = socket.create_connection(("127.0.0.1", GLANCE_PORT))
        threading.Thread(target=self._pipe, args=(upstream, client),
                         daemon=True).start()
        sent, uploading = 0, False
        with contextlib.suppress(OSError):
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if data.startswith(b"PUT ") and (b"/stage " in data[:200]
                                                 or b"/file " in data[:200]):
                    uploading, sent = True, 0
                if uploading:
                    sent += len(data)
                    if self.limit and sent > self.limit and (
                            self.times is None or self.cut < self.times):
                        self.cut += 1
                        break
                    time.sleep(self.pace)
                upstream.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @staticmethod
    def _pipe(source, destination):
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                destination.sendall(data)
        with contextlib.suppress(OSError):
            destination.shutdown(socket.SHUT_WR)

    def close(self):
        self.server.close()


def test_glance_failure_mid_upload_leaves_no_image(
        workspace, env, openstack_target, second_project, admin_conn):
    config, store, directory = workspace
    proxy = CuttingProxy()
    try:
        result = _run(workspace, env, "provider_image", "openstack",
                      json.dumps({"auth_url": KEYSTONE,
                                  "glance-host": "127.0.0.1",
                                  "glance-port": proxy.port}),
                      _credentials(directory, second_project), "--id",
                      openstack_target["identifier"], "--parameter",
                      "import_method", "glance-direct")
    finally:
        proxy.close()
    assert proxy.cut >= 1
    assert result.returncode == 1
    image = builds.record(result)
    assert image["status"] == "FAILED"
    error = image["status_detail"]["error"]
    assert error.startswith("staging the image data in Glance: "), error
    assert "\n" not in error
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines()
            if "error" in line.lower()][-1].endswith(error)
    assert image["identifier_on_provider"] is None
    assert _images_of(admin_conn, second_project["project"]) == []


def test_ctrl_c_mid_upload_leaves_no_image(
        workspace, env, openstack_target, second_project, admin_conn):
    config, store, directory = workspace
    project = second_project["project"]
    proxy = CuttingProxy(limit=None, pace=0.02)  # about 3 MiB/s
    try:
        proc = builds.start(
            config, "provider_image", "openstack", json.dumps(
                {"auth_url": KEYSTONE, "glance-host": "127.0.0.1",
                 "glance-port": proxy.port}),
            _credentials(directory, second_project), "--id",
            openstack_target["identifier"], env=env)

        def started():
            assert proc.poll() is None, proc.communicate()
            return _images_of(admin_conn, project)
        poll.wait_for(started, 120, "the upload to start", interval=0.5)
        time.sleep(2)  # well into the upload
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proxy.close()
    assert proc.returncode == 1, err
    assert json.loads(out)["status_detail"]["error"].startswith(
        "interrupted at ")
    assert _images_of(admin_conn, project) == []


def test_download_streams_and_checks_the_hash(pushed, openstack_target,
                                              test_cloud, tmp_path,
                                              monkeypatch):
    """How a base image built in Nova reaches a format target: its Glance
    image streamed down (here: the pushed image), checked by its hash."""
    from imgfac_nova.plugins import provider_access
    from novaimagebuilder.images import download
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", test_cloud.clouds_yaml)
    client = provider_access.connect(provider_access.parse_provider("@imgfac-test"),
                                     None).glance
    path = str(tmp_path / "down.qcow2")
    seen = []
    started = time.monotonic()
    download.download(client, pushed["identifier_on_provider"], path,
                      progress=lambda percent, done: seen.append(percent))
    seconds = time.monotonic() - started
    assert _sha512(path) == _sha512(openstack_target["data"])
    assert seen[-1] == 100
    print("download: %.1f s, %.1f MiB/s" % (
        seconds, os.path.getsize(path) / 2 ** 20 / seconds))


# -- the openstack target of a Nova-built base, made in the cloud --------------

#: Target content for the openstack target: a file that stays, and a command
#: that leaves identity behind (a machine-id, a shell history, a log), which
#: the in-guest clean-up after it must remove; it notes that the guest had
#: SSH host keys while it ran.
IN_CLOUD_CONTENT = """<template_includes>
  <include target="openstack">
    <files><file name="/etc/imgfac-openstack">in-cloud target</file></files>
    <commands>
      <command name="identity">
        ls /etc/ssh/ssh_host_ed25519_key > /etc/imgfac-had-host-key &amp;&amp;
        echo 0123456789abcdef0123456789abcdef > /etc/machine-id &amp;&amp;
        echo sudo-history > /root/.bash_history &amp;&amp;
        echo ft-log > /var/log/imgfac-ft.log
      </command>
    </commands>
  </include>
</template_includes>
"""


@pytest.fixture(scope="session")
def in_cloud(nova_base_image, cloud_env, tmp_path_factory, conn):
    """The openstack target of the session's Nova base, made in the cloud
    (the default for such a base), with IN_CLOUD_CONTENT: ``(record,
    configuration, seconds)``; its Glance image is gone at the end."""
    config, _ = _content_config(
        (None, nova_base_image.store, tmp_path_factory.mktemp("in-cloud")),
        IN_CLOUD_CONTENT)
    started = time.monotonic()
    image = _complete(builds.imgfac(config, "target_image", "--id",
                                    nova_base_image.record["identifier"],
                                    "openstack", env=cloud_env))
    seconds = time.monotonic() - started
    print("openstack target of the Nova base in the cloud: %.1f s (%s)"
          % (seconds, image["timings"]))
    yield image, config, seconds
    conn.image.delete_image(_glance_id(image), ignore_missing=True)


def _look_inside(disk, directories, paths):
    """``(files under directories, {path: content or None})`` of ``disk``,
    in one guestfish run (read-only; an appliance boot costs under TCG)."""
    mark = "@@imgfac-ft@@"
    script = "".join("find %s\necho %s\n" % (d, mark) for d in directories)
    script += "".join("is-file %s\n-cat %s\necho %s\n" % (p, p, mark)
                      for p in paths)
    result = subprocess.run(
        ["guestfish", "--ro", "-a", disk, "-i"], input=script,
        capture_output=True, text=True,
        env=dict(os.environ, LIBGUESTFS_BACKEND="direct",
                 LIBGUESTFS_BACKEND_SETTINGS="force_tcg"))
    assert result.returncode == 0, result.stderr
    parts = result.stdout.split(mark + "\n")
    files = {directory + name for directory, part in zip(directories, parts)
             for name in part.splitlines()}
    found = {}
    for path, part in zip(paths, parts[len(directories):]):
        is_file, _, content = part.partition("\n")
        found[path] = content if is_file == "true" else None
    return files, found


def _glance_id(image):
    return image["properties"]["x-image-properties-glance_id"]


def test_in_cloud_target_is_a_private_glance_image_with_nova_properties(
        in_cloud, nova_base_image, cloud_env, conn):
    image, config, _ = in_cloud
    props = image["properties"]
    assert props["in_cloud"] is True
    assert image["data"] is None
    store = nova_base_image.store
    assert not [name for name in os.listdir(store)
                if name.startswith(image["identifier"] + ".body")]
    with open(image["log"]) as handle:
        log = handle.read()
    assert "no download, no upload" in log
    # every download and upload logs its start (novaimagebuilder.images.glance)
    for word in ("Downloading", "Uploading", "Staging"):
        assert word + " " not in log
    assert "Running the machine identity removal" in log
    found = conn.image.get_image(_glance_id(image))
    assert found.status == "active" and found.visibility == "private"
    assert found.owner == conn.current_project_id
    assert found.os_distro == "debian" and found.os_version == "12"
    assert found.architecture == "x86_64"
    assert found.hw_disk_bus == "virtio" and found.hw_vif_model == "virtio"
    assert "hw_qemu_guest_agent" not in found.properties  # not installed
    # the virtual size of the server's disk (the flavor's), rounded up
    assert found.min_disk == props["min_disk"] == math.ceil(
        found.virtual_size / 2 ** 30)
    assert found.min_ram == props["min_ram"] == 512  # a Nova base's default
    assert scs_0102.glance_offences(found) == []
    assert found.properties["imgfac_build_id"] == image["identifier"]
    assert found.properties["imgfac_role"] == "image"
    assert found.properties["imgfac_base_image"] == \
        nova_base_image.record["identifier"]
    assert found.hash_value == props["os_hash_value"]
    assert props["disk_format"] == found.disk_format == "qcow2"
    assert props["glance_properties"]["os_distro"] == "debian"
    assert image["status"] == "COMPLETE"
    assert "figlet" not in _icicle_packages(image)
    assert "hello" in _icicle_packages(image)  # the base's, read again
    dry = builds.imgfac(config, "sweep", "--dry-run", env=cloud_env)
    assert dry.returncode == 0, dry.stderr
    assert _glance_id(image) not in dry.stdout  # a result, not a leftover


def test_in_cloud_target_has_no_machine_identity(in_cloud, conn, tmp_path):
    image, _, _ = in_cloud
    disk = str(tmp_path / "target.qcow2")
    with open(disk, "wb") as handle:
        conn.image.download_image(_glance_id(image), output=handle)
    files, found = _look_inside(
        disk, ("/etc/ssh", "/home"), (
            "/etc/imgfac-openstack", "/etc/imgfac-had-host-key",
            "/etc/machine-id", "/root/.bash_history",
            "/var/log/imgfac-ft.log"))
    assert not [f for f in files if f.startswith("/etc/ssh/ssh_host_")]
    assert "/home/debian/.ssh/authorized_keys" not in files
    assert "/etc/ssh/sshd_config" in files
    assert found["/etc/imgfac-openstack"].strip() == "in-cloud target"
    assert found["/etc/imgfac-had-host-key"].strip() == \
        "/etc/ssh/ssh_host_ed25519_key"  # the guest had them while it ran
    assert found["/etc/machine-id"].strip() == ""
    assert found["/root/.bash_history"] is None
    assert found["/var/log/imgfac-ft.log"] is None


def test_failed_in_cloud_target_leaves_nothing(nova_base_image, cloud_env,
                                               tmp_path, admin_conn):
    config, _ = _content_config(
        (None, nova_base_image.store, tmp_path),
        IN_CLOUD_CONTENT.replace("ls /etc/ssh/", "ls /no/such/dir/"))
    result = builds.imgfac(config, "target_image", "--id",
                           nova_base_image.record["identifier"], "openstack",
                           env=cloud_env)
    assert result.returncode == 1
    image = builds.record(result)
    assert image["status"] == "FAILED"
    error = image["status_detail"]["error"]
    assert error.startswith("command 'identity' exited with status "), error
    assert "Traceback" not in result.stderr
    assert builds.cloud_left(admin_conn, image["identifier"]) == []
    assert not [name for name in os.listdir(nova_base_image.store)
                if name.startswith(image["identifier"] + ".body")]


@pytest.fixture(scope="session")
def handed_over(in_cloud, cloud_env, conn):
    """The push of the in-cloud target to its own cloud and project."""
    image, config, _ = in_cloud
    started = time.monotonic()
    pushed = _complete(builds.imgfac(config, "provider_image", "openstack",
                                     "@imgfac-test", "-", "--id",
                                     image["identifier"], env=cloud_env))
    seconds = time.monotonic() - started
    print("same-cloud push of the in-cloud target: %.1f s" % seconds)
    return pushed


def test_same_cloud_push_moves_no_bytes(handed_over, in_cloud, conn):
    pushed = handed_over
    image, _, _ = in_cloud
    assert pushed["identifier_on_provider"] == _glance_id(image)
    # No image of its own in that Glance (an upload would be tagged with it).
    assert [i.id for i in conn.image.images(owner=conn.current_project_id)
            if (i.properties or {}).get(cloud.BUILD_TAG)
            == pushed["identifier"]] == []
    assert pushed["properties"]["handed_over_from"] == image["identifier"]
    assert pushed["properties"]["os_hash_value"] == \
        image["properties"]["os_hash_value"]
    assert pushed["provider_account_identifier"] == "imgfac/imgfac"
    with open(pushed["log"]) as handle:
        log = handle.read()
    assert "handing it over, no bytes move" in log
    for word in ("Downloading", "Uploading", "Staging"):
        assert word + " " not in log
    assert conn.image.get_image(_glance_id(image)).status == "active"


def test_handed_over_image_boots(handed_over, conn):
    pushed = handed_over
    with guestcheck.booted_in_cloud(
            conn, pushed["identifier_on_provider"]) as guest:
        assert guest.run("cat /etc/imgfac-openstack")[1].strip() == \
            "in-cloud target"
        assert guest.run("cat /etc/imgfac-ft.txt")[1].strip() == \
            "made by imgfac-nova"  # the base's customization
        assert guest.run("hello")[1].strip() == "Hello, world!"


def test_in_cloud_target_pushed_to_another_project_is_copied(
        in_cloud, cloud_env, second_project, admin_conn, tmp_path):
    image, config, _ = in_cloud
    provider = json.dumps({"auth_url": KEYSTONE, "min_ram": 256})
    pushed = _complete(builds.imgfac(
        config, "provider_image", "openstack", provider,
        _credentials(tmp_path, second_project), "--id", image["identifier"],
        env=cloud_env))
    glance_id = pushed["identifier_on_provider"]
    assert glance_id != _glance_id(image)
    assert glance_id in _images_of(admin_conn, second_project["project"])
    found = admin_conn.image.get_image(glance_id)
    assert found.status == "active" and found.min_ram == 256
    assert found.hash_value == image["properties"]["os_hash_value"]
    assert found.os_distro == "debian" and found.hw_disk_bus == "virtio"
    with open(pushed["log"]) as handle:
        log = handle.read()
    assert "Copying Glance image %s" % _glance_id(image) in log
    assert "Uploading " in log and "Downloading " not in log
    assert not [name for name in os.listdir(os.path.dirname(pushed["log"]))
                if name.startswith(pushed["identifier"] + ".body")]
    deleted = builds.imgfac(config, "delete", pushed["identifier"],
                            "--credentials",
                            _credentials(tmp_path, second_project),
                            env=cloud_env)
    assert deleted.returncode == 0, deleted.stderr
    assert glance_id not in _images_of(admin_conn, second_project["project"])


def test_delete_of_the_target_and_its_push_share_the_glance_image(
        handed_over, in_cloud, cloud_env, conn):
    """Last of the in-cloud tests: either image may go first; the Glance
    image goes with the last one."""
    pushed = handed_over
    image, config, _ = in_cloud
    glance_id = _glance_id(image)
    deleted = builds.imgfac(config, "delete", pushed["identifier"],
                            env=cloud_env)
    assert deleted.returncode == 0, deleted.stderr
    assert conn.image.find_image(glance_id) is not None  # the target's
    deleted = builds.imgfac(config, "delete", image["identifier"],
                            env=cloud_env)
    assert deleted.returncode == 0, deleted.stderr
    assert conn.image.find_image(glance_id) is None


@pytest.mark.slow  # a Nova boot, a download and virt-sysprep under TCG
def test_download_path_of_the_nova_base_for_comparison(
        in_cloud, nova_base_image, cloud_env):
    """The same target the way it was made before in_cloud: the boot's
    snapshot streamed down, virt-sysprep, conversion (for the figures)."""
    image, config, seconds = in_cloud
    started = time.monotonic()
    local = _complete(builds.imgfac(config, "target_image", "--id",
                                    nova_base_image.record["identifier"],
                                    "--parameter", "in_cloud", "false",
                                    "openstack", env=cloud_env))
    downloaded = time.monotonic() - started
    print("openstack target of the Nova base: %.1f s in the cloud, %.1f s "
          "downloaded (%s)" % (seconds, downloaded, local["timings"]))
    assert "in_cloud" not in local["properties"]
    assert os.path.getsize(local["data"]) > 0
    assert local["properties"]["glance_properties"] == \
        image["properties"]["glance_properties"]
    assert "sysprep" in local["timings"]

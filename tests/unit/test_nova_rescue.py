"""The Nova backend's ISO install path (blank disk, rescue with the ISO,
power-off in rescue, unrescue before the capture), as REST conversations of
the real openstacksdk with a cloud declared by requests-mock."""
import hashlib
import json

import openstack.connection
import pytest
import requests_mock

from novaimagebuilder import cloud as cloudlib
from novaimagebuilder import errors
from novaimagebuilder.images import glance
from novaimagebuilder.machines import nova
from novaimagebuilder.machines import nova_connect
from novaimagebuilder.machines import nova_installer
from novaimagebuilder.machines import nova_servers

NOVA = "http://nova.test/v2.1/"
GLANCE = "http://glance.test/"


def nova_version(max_version="2.96"):
    return {"version": {"id": "v2.1", "status": "CURRENT",
                        "version": max_version, "min_version": "2.1",
                        "links": [{"rel": "self", "href": NOVA}]}}


def server(status, vm_state, power_state, task_state=None):
    return {"server": {"id": "srv1", "name": "imgfac-nova-b1-installer",
                       "status": status, "OS-EXT-STS:vm_state": vm_state,
                       "OS-EXT-STS:task_state": task_state,
                       "OS-EXT-STS:power_state": power_state,
                       "addresses": {}, "accessIPv4": ""}}


ACTIVE = server("ACTIVE", "active", 1)
RESCUING = server("RESCUE", "active", 1, "rescuing")
RESCUED = server("RESCUE", "rescued", 1)
RESCUED_OFF = server("RESCUE", "rescued", 4)
SHUTOFF = server("SHUTOFF", "stopped", 4)


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.get(NOVA, json=nova_version())
        mock.get(GLANCE, json={"versions": [{
            "id": "v2.16", "status": "CURRENT",
            "links": [{"rel": "self", "href": GLANCE + "v2/"}]}]})
        # No image or server an earlier run of the build made (nothing to
        # adopt).
        mock.get(GLANCE + "v2/images", json={"images": []})
        mock.get(NOVA + "servers/detail", json={"servers": []})
        yield mock


def connect():
    return openstack.connection.Connection(
        auth_type="none", auth={"endpoint": NOVA},
        compute_endpoint_override=NOVA, image_endpoint_override=GLANCE)


@pytest.fixture
def backend(cloud):
    conn = connect()
    flavor = conn.compute._get_resource(
        openstack.compute.v2.flavor.Flavor, None, id="1", name="1", disk=2)
    return nova.NovaBackend(conn, "b1", flavor, config_drive=True)


def servers(cloud, *states):
    """GET /servers/srv1 answers ``states`` in turn (the last one stays)."""
    cloud.get(NOVA + "servers/srv1", [{"json": s} for s in states])


def actions(cloud):
    return [list(json.loads(r.body))[0] for r in cloud.request_history
            if r.method == "POST" and r.path.endswith("/servers/srv1/action")]


def glance_images(cloud, *ids):
    """Glance as glanceclient talks to it (the image schema, create, upload,
    get, update, delete) for the images ``ids``, created in turn; returns
    the bytes uploaded, by image id. A GET answers the sha512 of those
    bytes, as Glance does, so the upload's hash check passes."""
    from tests.unit import test_glance_transfer
    schema = dict(test_glance_transfer.SCHEMA, properties=dict(
        test_glance_transfer.SCHEMA["properties"], **{
            key: {"type": "integer"} for key in ("min_disk", "min_ram")}))
    uploads = {}

    def upload(image):
        def answer(request, context):
            body = request.body
            uploads[image] = body if isinstance(body, bytes) else \
                body.read() if hasattr(body, "read") else b"".join(body)
            context.status_code = 204
            return ""
        return answer

    def get(image):
        return lambda request, context: {
            "id": image, "status": "active", "name": image,
            "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(uploads[image]).hexdigest()}

    cloud.get(GLANCE + "v2/schemas/image", json=schema)
    cloud.post(GLANCE + "v2/images", [
        {"status_code": 201, "json": {"id": image, "status": "queued",
                                      "name": image}} for image in ids])
    for image in ids:
        cloud.put(GLANCE + "v2/images/%s/file" % image, text=upload(image))
        cloud.get(GLANCE + "v2/images/%s" % image, json=get(image))
        cloud.patch(GLANCE + "v2/images/%s" % image, json=get(image))
        cloud.delete(GLANCE + "v2/images/%s" % image, status_code=204)
    cloud.get(GLANCE + "v2/images", json=lambda request, context: {
        "images": listed(cloud, ids, request.qs)})
    return uploads


def listed(cloud, ids, filters):
    """The images of ``ids`` made so far and not deleted whose properties
    match the list's ``filters``, as Glance lists them."""
    made = {}
    for r in cloud.request_history:
        if r.method == "POST" and r.path == "/v2/images":
            image = ids[len(made)]
            made[image] = dict(json.loads(r.body), id=image, status="active")
        elif r.method == "DELETE" and r.path.startswith("/v2/images/"):
            made.pop(r.path.rsplit("/", 1)[1], None)
    return [image for image in made.values()
            if all(str(image.get(key)).lower() == values[0]
                   for key, values in filters.items()
                   if key not in ("limit", "marker", "sort"))]


def roles(cloud):
    """The ``imgfac_role`` each image got once its bytes were checked (while
    they move, it is glance.UPLOADING)."""
    return {r.path.rsplit("/", 1)[1]: op["value"]
            for r in cloud.request_history
            if r.method == "PATCH" and r.path.startswith("/v2/images/")
            for op in json.loads(r.body) if op["path"] == "/imgfac_role"}


#: The media handle of an ISO install whose copy ("iso1") is in Glance.
KICKSTART_ISO = {"files": {"iso": "/media/dvd.iso"},
                 "sha256": {"iso": "d" * 64}}


@pytest.fixture
def shared_copy(backend, monkeypatch):
    """The shared copy of KICKSTART_ISO is in Glance: "iso1"."""
    monkeypatch.setattr(backend, "_media_image", lambda *args: "iso1")


def test_iso_install_boots_a_blank_disk_and_rescues_it_with_the_iso(
        cloud, backend, shared_copy):
    glance_images(cloud, "disk1")
    cloud.post(NOVA + "servers", status_code=202, json=ACTIVE)
    cloud.post(NOVA + "servers/srv1/action", status_code=200,
               json={"adminPass": "rescue-secret"})
    servers(cloud, ACTIVE, RESCUING, RESCUED)

    machine = backend.boot_installer(KICKSTART_ISO, "poweroff\n",
                                     "kickstart", "console=x", None)

    assert machine.rescued and machine.id == "srv1"
    disk = next(json.loads(r.body) for r in cloud.request_history
                if r.method == "POST" and r.path == "/v2/images")
    assert disk["imgfac_role"] == glance.UPLOADING
    assert roles(cloud) == {"disk1": "installer-disk"}
    assert not set(nova_installer.DIRECT_BOOT_PROPERTIES) & set(disk)
    boot = next(json.loads(r.body)["server"] for r in cloud.request_history
                if r.method == "POST" and r.path == "/v2.1/servers")
    assert boot["imageRef"] == "disk1" and boot["config_drive"] is True
    rescue = [r for r in cloud.request_history
              if r.path == "/v2.1/servers/srv1/action"]
    assert [json.loads(r.body) for r in rescue] == [
        {"rescue": {"rescue_image_ref": "iso1"}}]
    assert rescue[0].headers["OpenStack-API-Version"] == "compute 2.96"
    # Waited until Nova finished rescuing.
    gets = [r for r in cloud.request_history
            if r.method == "GET" and r.path == "/v2.1/servers/srv1"]
    assert len(gets) == 3


def test_failed_rescue_removes_the_server_and_the_disk(cloud, backend,
                                                       shared_copy):
    glance_images(cloud, "disk1")
    cloud.post(NOVA + "servers", status_code=202, json=ACTIVE)
    cloud.post(NOVA + "servers/srv1/action", status_code=400, json={
        "badRequest": {"code": 400, "message": "Requested rescue device "
                       "'floppy' is not supported"}},
               headers={"Content-Type": "application/json"})
    cloud.get(NOVA + "servers/srv1", [{"json": ACTIVE},
                                      {"status_code": 404, "json": {}}])
    cloud.delete(NOVA + "servers/srv1", status_code=204)

    with pytest.raises(errors.BuildError) as raised:
        backend.boot_installer(KICKSTART_ISO, "poweroff\n", "kickstart",
                               "console=x", None)

    assert str(raised.value) == (
        "Nova could not rescue server imgfac-nova-b1-installer (srv1) with "
        "the install ISO: Requested rescue device 'floppy' is not supported "
        "(HTTP 400)")
    deleted = [r.path for r in cloud.request_history if r.method == "DELETE"]
    assert deleted == ["/v2.1/servers/srv1", "/v2/images/disk1"]


def test_a_rescued_guest_that_powered_off_is_off(cloud, backend):
    servers(cloud, RESCUED, RESCUED_OFF)
    cloud.post(NOVA + "servers/srv1/action", json={"output": "done\n"})
    machine = nova_servers.Server("srv1", "installer", "installer", rescued=True)
    backend.wait_powered_off(machine, "installing", 60)
    gets = [r for r in cloud.request_history
            if r.method == "GET" and r.path == "/v2.1/servers/srv1"]
    assert len(gets) == 2


@pytest.mark.parametrize("state,off", [
    (ACTIVE, False), (RESCUED, False), (SHUTOFF, True), (RESCUED_OFF, True),
    # Nova is still rescuing: the old guest's power state means nothing.
    (server("RESCUE", "active", 4, "rescuing"), False),
])
def test_powered_off(state, off):
    from openstack.compute.v2 import server as sdk_server
    found = sdk_server.Server.existing(**state["server"])
    assert nova_servers.powered_off(found) is off


def test_capture_of_a_rescued_server_unrescues_and_stops_it_first(
        cloud, backend):
    answers = {"createImage": {"image_id": "jeos1"},
               "os-getConsoleOutput": {"output": "login:\n"}}
    cloud.post(NOVA + "servers/srv1/action", status_code=202,
               json=lambda request, _: answers.get(list(request.json())[0]))
    servers(cloud, RESCUED_OFF, ACTIVE, SHUTOFF)
    cloud.get(GLANCE + "v2/images/jeos1",
              json={"id": "jeos1", "status": "active", "name": "j"})
    machine = nova_servers.Server("srv1", "installer", "installer", rescued=True)

    assert backend.capture(machine, "jeos") == "jeos1"

    assert [a for a in actions(cloud) if a != "os-getConsoleOutput"] == [
        "unrescue", "os-stop", "createImage"]
    assert not machine.rescued


@pytest.mark.parametrize("version,shown", [("2.86", "2.86"),
                                           ("", "2.1 (no microversions)")])
def test_iso_installs_need_stable_rescue(cloud, version, shown):
    cloud.get(NOVA, json=nova_version(version))
    with pytest.raises(errors.BuildError) as raised:
        nova_connect.check_stable_rescue(connect())
    assert str(raised.value) == (
        "ISO installs need Nova's stable device rescue (compute API "
        "microversion 2.87, OpenStack Victoria or later); this cloud's "
        "compute API goes up to %s" % shown)
    assert [r.method for r in cloud.request_history] == ["GET"]


def test_stable_rescue_is_enough(backend):
    nova_connect.check_stable_rescue(backend.conn)


def test_preseed_iso_install_rescues_with_a_private_remastered_iso(
        cloud, backend, tmp_path):
    """d-i reads its preseed from its initrd: the server is rescued with a
    copy of the ISO made for this build, private, tagged, marked for a
    CD-ROM rescue, holding the preseed; a failed rescue removes it too."""
    from tests.unit import test_remaster
    iso = test_remaster.make_iso(tmp_path, dict(
        test_remaster.MINI_ISO,
        **{"initrd.gz": test_remaster.gz_cpio({"init": b"d-i"}),
           "gtk/initrd.gz": test_remaster.gz_cpio({"init": b"gtk"})}))
    uploads = glance_images(cloud, "iso2", "disk1")
    cloud.post(NOVA + "servers", status_code=202, json=ACTIVE)
    cloud.post(NOVA + "servers/srv1/action", status_code=409, json={
        "conflictingRequest": {"code": 409, "message": "busy"}},
        headers={"Content-Type": "application/json"})
    cloud.get(NOVA + "servers/srv1", [{"json": ACTIVE},
                                      {"status_code": 404, "json": {}}])
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    script = "d-i passwd/root-password-crypted password $6$s$secrethash\n"

    with pytest.raises(errors.BuildError):
        backend.boot_installer({"files": {"iso": iso},
                                "sha256": {"iso": "d" * 64}}, script,
                               "preseed", "console=ttyS0 priority=critical",
                               None)

    made = [json.loads(r.body) for r in cloud.request_history
            if r.method == "POST" and r.path == "/v2/images"]
    assert made[0]["disk_format"] == "iso"
    assert made[0]["visibility"] == "private"
    assert (made[0]["hw_rescue_device"], made[0]["imgfac_build_id"]) == (
        "cdrom", "b1")
    assert roles(cloud) == {"iso2": "installer-iso", "disk1": "installer-disk"}
    rescue = [json.loads(r.body) for r in cloud.request_history
              if r.path == "/v2.1/servers/srv1/action"]
    assert rescue == [{"rescue": {"rescue_image_ref": "iso2"}}]
    # The uploaded ISO boots its text installer with the preseed.
    copy = tmp_path / "uploaded.iso"
    copy.write_bytes(uploads["iso2"])
    grub = test_remaster.read(str(copy), "/boot/grub/grub.cfg", tmp_path)
    assert b"linux /linux vga" not in grub and b"priority=critical" in grub
    data = test_remaster.read(str(copy), "/initrd.gz", tmp_path)
    assert test_remaster.unpack_appended(
        data, test_remaster.gz_cpio({"init": b"d-i"}), tmp_path / "root") \
        == {"preseed.cfg": script.encode()}
    # Nothing of it is left: server, disk and ISO are deleted.
    deleted = [r.path for r in cloud.request_history if r.method == "DELETE"]
    assert deleted[0] == "/v2.1/servers/srv1"
    assert sorted(deleted[1:]) == ["/v2/images/disk1", "/v2/images/iso2"]


def test_kickstart_iso_copy_is_shared_media_booting_with_the_cmdline(
        backend, tmp_path, monkeypatch):
    """An installer that reads its script from the config drive still needs
    the build's kernel arguments (inst.ks=, the serial console), which the
    ISO's own menu never sees: the copy boots with them, its initrd is the
    ISO's, and it is shared media keyed by the ISO's digest and the
    command line (made only when Glance lacks it)."""
    import hashlib
    from tests.unit import test_remaster
    initrd = test_remaster.gz_cpio({"init": b"anaconda"})
    iso = test_remaster.make_iso(tmp_path, {
        "isolinux/isolinux.cfg": "default vesamenu.c32\ntimeout 600\n"
        "label linux\n  menu label ^Install Fedora 40\n  kernel vmlinuz\n"
        "  append initrd=initrd.img inst.stage2=hd:LABEL=Fedora-S-40 quiet\n",
        "isolinux/vmlinuz": "kernel", "isolinux/initrd.img": initrd})
    asked = []

    def media_image(role, digest, make, disk_format, container_format):
        asked.append((role, digest, disk_format, container_format))
        path = make()
        asked.append(test_remaster.read(path, "/isolinux/isolinux.cfg",
                                        tmp_path))
        asked.append(test_remaster.read(path, "/isolinux/initrd.img",
                                        tmp_path))
        return "iso9"

    monkeypatch.setattr(backend, "_media_image", media_image)
    monkeypatch.setattr(backend, "_installer_disk", lambda *a, **k: "disk1")
    monkeypatch.setattr(backend, "_boot", lambda *a, **k: "server")
    rescued = []
    monkeypatch.setattr(backend, "_rescue",
                        lambda server, image: rescued.append(image))
    cmdline = "console=ttyS0 inst.ks=hd:LABEL=config-2:/openstack/latest/" \
        "user_data"

    assert backend.boot_installer(
        {"files": {"iso": iso}, "sha256": {"iso": "d" * 64}},
        "rootpw --iscrypted $6$s$h\n", "kickstart", cmdline,
        None) == "server"

    key = hashlib.sha256(("d" * 64 + " " + cmdline).encode()).hexdigest()
    assert asked[0] == ("iso", key, "iso", "bare")
    assert ("append initrd=initrd.img inst.stage2=hd:LABEL=Fedora-S-40 quiet "
            + cmdline + "\n").encode() in asked[1]
    assert b"rootpw" not in asked[1]
    assert asked[2] == initrd
    assert rescued == ["iso9"]


def test_a_deleted_server_is_gone_only_when_nova_no_longer_has_it(cloud):
    # nova-compute shows vm_state DELETED, then gives back the placement
    # allocation, then removes the instance: the server counts until the 404.
    deleted = server("DELETED", "deleted", 0)
    cloud.get(NOVA + "servers/srv1", [
        {"json": server("ACTIVE", "active", 1, "deleting")}, {"json": deleted},
        {"json": deleted}, {"status_code": 404, "json": {}}])
    nova_servers.wait_server_gone(connect(), "srv1", timeout=30)
    gets = [r for r in cloud.request_history if r.method == "GET"
            and r.path.endswith("/servers/srv1")]
    assert len(gets) == 4


def _tagged(answer):
    return {"server": dict(answer["server"], metadata={cloudlib.BUILD_TAG: "b1"})}


def test_a_rerun_boot_adopts_the_installer_an_earlier_run_made(
        cloud, backend, shared_copy):
    """The boot ran again (its process died before its result was saved):
    the disk image and the rescued installer are adopted, nothing made
    twice."""
    glance_images(cloud)
    cloud.get(GLANCE + "v2/images", json={"images": [
        {"id": "disk1", "name": "imgfac-nova-b1-installer-disk",
         "status": "active", cloudlib.BUILD_TAG: "b1"}]})
    cloud.get(NOVA + "servers/detail", json={"servers": [
        _tagged(RESCUED)["server"]]})
    servers(cloud, _tagged(RESCUED))

    machine = backend.boot_installer(KICKSTART_ISO, "poweroff\n",
                                     "kickstart", "console=x", None)

    assert machine.id == "srv1" and machine.rescued
    assert not [r for r in cloud.request_history if r.method == "POST"]


def test_adopting_an_installer_finds_what_belongs_to_it(cloud, backend):
    glance_images(cloud)
    cloud.get(NOVA + "servers/srv1", json=_tagged(SHUTOFF))
    cloud.get(GLANCE + "v2/images?imgfac_build_id=b1", json={"images": [
        {"id": "disk1", "name": "imgfac-nova-b1-installer-disk",
         "status": "active", cloudlib.BUILD_TAG: "b1"},
        {"id": "jeos1", "name": "imgfac-nova-b1-jeos",
         "status": "active", cloudlib.BUILD_TAG: "b1"}]})
    cloud.delete(NOVA + "servers/srv1", status_code=204)
    cloud.delete(GLANCE + "v2/images/disk1", status_code=204)
    machine = backend.adopt("srv1")
    assert not machine.rescued
    cloud.get(NOVA + "servers/srv1", status_code=404)
    backend.delete(machine)
    assert [r.path for r in cloud.request_history if r.method == "DELETE"] \
        == ["/v2.1/servers/srv1", "/v2/images/disk1"]


def test_adopting_a_server_that_is_gone_or_not_the_builds(cloud, backend):
    cloud.get(NOVA + "servers/srv1", status_code=404)
    with pytest.raises(errors.Gone, match="server srv1 is gone"):
        backend.adopt("srv1")
    cloud.get(NOVA + "servers/srv1", json=SHUTOFF)  # no build tag
    with pytest.raises(errors.BuildError, match="not this build's"):
        backend.adopt("srv1")


def test_a_snapshot_is_done_when_nova_has_ended_its_task(cloud, backend):
    """Glance has the bytes before nova-compute clears the server's
    image_uploading: the capture returns only once it is cleared."""
    cloud.post(NOVA + "servers/srv1/action", status_code=202,
               json={"image_id": "jeos1"})
    uploading = server("SHUTOFF", "stopped", 4, "image_uploading")
    servers(cloud, uploading, uploading, SHUTOFF)
    cloud.get(GLANCE + "v2/images/jeos1",
              json={"id": "jeos1", "status": "active", "name": "j"})
    machine = nova_servers.Server("srv1", "installer", None)

    assert backend.capture(machine, "jeos") == "jeos1"

    gets = [r.path for r in cloud.request_history if r.method == "GET"]
    assert gets.count("/v2.1/servers/srv1") == 3
    assert gets.index("/v2/images/jeos1") < gets.index("/v2.1/servers/srv1")


def test_a_snapshot_whose_server_breaks_fails_naming_it(cloud, backend):
    cloud.post(NOVA + "servers/srv1/action", status_code=202,
               json={"image_id": "jeos1"})
    broken = server("ERROR", "error", 4, "image_uploading")
    broken["server"]["fault"] = {"message": "disk gone"}
    servers(cloud, broken)
    cloud.get(GLANCE + "v2/images/jeos1",
              json={"id": "jeos1", "status": "active", "name": "j"})
    cloud.delete(GLANCE + "v2/images/jeos1", status_code=204)

    with pytest.raises(errors.WaitFailed) as raised:
        backend.capture(nova_servers.Server("srv1", "installer", None), "jeos")

    assert str(raised.value) == (
        "waiting for Nova to finish its task on server installer (srv1): "
        "Nova put the server in ERROR: disk gone")
    assert ("DELETE", "/v2/images/jeos1") in [
        (r.method, r.path) for r in cloud.request_history]


def test_a_snapshot_keeps_nothing_of_the_installer_or_the_jeos_cache(
        cloud, backend):
    """Nova copies the booted image's properties to its snapshot: the
    installer's direct boot and a JEOS cache entry's keys are removed."""
    cloud.post(NOVA + "servers/srv1/action", status_code=202,
               json={"image_id": "img1"})
    servers(cloud, SHUTOFF)
    inherited = {"kernel_id": "k1", "os_command_line": "x",
                 "imgfac_jeos_key": "abc", "imgfac_jeos_os": "Debian 12",
                 "imgfac_jeos_stored": "1", "os_distro": "debian"}
    cloud.get(GLANCE + "v2/images/img1", json=dict(
        inherited, id="img1", status="active", name="i"))
    cloud.patch(GLANCE + "v2/images/img1", json={"id": "img1"})

    assert backend.capture(nova_servers.Server("srv1", "guest", None), "image") \
        == "img1"

    removed = [op["path"] for r in cloud.request_history
               if r.method == "PATCH" for op in json.loads(r.body)
               if op["op"] == "remove"]
    assert sorted(removed) == ["/imgfac_jeos_key", "/imgfac_jeos_os",
                               "/imgfac_jeos_stored", "/kernel_id",
                               "/os_command_line"]

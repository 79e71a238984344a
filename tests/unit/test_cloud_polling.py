"""Kind to the cloud: the install wait polls the server's status every
poll and reads the console (an RPC to nova-compute) seldom, its tail only."""
import json

from novaimagebuilder import cloud as cloudlib
from novaimagebuilder.machines import nova_servers
from tests.unit.test_nova_rescue import ACTIVE
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import SHUTOFF
from tests.unit.test_nova_rescue import backend  # noqa: F401 (fixture)
from tests.unit.test_nova_rescue import cloud  # noqa: F401 (fixture)
from tests.unit.test_nova_rescue import servers


def test_status_often_console_seldom(cloud, backend, monkeypatch):  # noqa: F811
    monkeypatch.setattr(nova_servers, "CONSOLE_EVERY", 3600)
    servers(cloud, *[ACTIVE] * 5, SHUTOFF)
    cloud.post(NOVA + "servers/srv1/action", json={"output": "booting\n"})
    machine = nova_servers.Server("srv1", "installer", "installer")
    backend.wait_powered_off(machine, "installing", 60, inactivity=600)
    gets = [r for r in cloud.request_history
            if r.method == "GET" and r.path == "/v2.1/servers/srv1"]
    reads = [json.loads(r.body) for r in cloud.request_history
             if r.method == "POST"]
    assert len(gets) == 6
    assert reads == [{"os-getConsoleOutput": {"length": nova_servers.CONSOLE_TAIL}}]


def test_media_reused_only_when_glance_holds_the_same_bytes(
        cloud, backend, tmp_path, monkeypatch):  # noqa: F811
    """Glance is asked for the project's active media of the digest; an
    image whose hash is not the file's is not reused but uploaded anew."""
    import hashlib
    from novaimagebuilder.installer import media
    from tests.unit.test_nova_rescue import GLANCE
    files, digests, answers = {}, {}, {}
    for role in ("kernel", "ramdisk"):
        files[role] = tmp_path / role
        files[role].write_bytes(role.encode() * 100)
        digests[role] = hashlib.sha256(files[role].read_bytes()).hexdigest()
        held = files[role].read_bytes() if role == "kernel" else b"other"
        answers[digests[role]] = {"images": [{
            "id": role + "-image", "status": "active",
            "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(held).hexdigest()}]}
    from tests.unit import test_glance_transfer
    cloud.get(GLANCE + "v2/schemas/image", json=test_glance_transfer.SCHEMA)
    cloud.get(GLANCE + "v2/images", json=lambda request, context: answers[
        request.qs[cloudlib.MEDIA_SHA256][0]])
    uploaded = []
    monkeypatch.setattr(backend, "_upload", lambda path, name, *args:
                        uploaded.append(name) or "uploaded")
    monkeypatch.setattr(type(backend.conn), "current_project_id", "p1")
    handle = backend.prepare_media(media.Media(
        "kernel", {r: str(p) for r, p in files.items()}, digests, "test"))
    assert handle["kernel"] == "kernel-image"
    assert handle["ramdisk"] == "uploaded"
    assert uploaded == ["imgfac-nova-media-ramdisk-%s" % digests["ramdisk"][:12]]
    asked = [r.qs for r in cloud.request_history if r.path == "/v2/images"]
    assert all(q["status"] == ["active"] and q["owner"] == ["p1"]
               for q in asked) and len(asked) == 2

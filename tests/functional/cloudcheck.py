"""Boot a Glance image in the test cloud and look inside it over SSH."""
import contextlib
import uuid

from novaimagebuilder import ssh
from novaimagebuilder import waiter


@contextlib.contextmanager
def booted(conn, image_id, user="debian"):
    """Yield an SSHGuest on a server booted from ``image_id``; everything made
    for it is removed afterwards."""
    import paramiko
    key = paramiko.ECDSAKey.generate(bits=256)
    name = "imgfac-ft-check-" + uuid.uuid4().hex[:8]
    conn.compute.create_keypair(name=name, public_key="%s %s" % (
        key.get_name(), key.get_base64()))
    server = None
    try:
        network = conn.network.find_network("imgfac-net")
        server = conn.compute.create_server(
            name=name, image_id=image_id, key_name=name, config_drive=True,
            flavor_id=conn.compute.find_flavor("2").id,
            networks=[{"uuid": network.id}])
        server = waiter.wait_for(
            "waiting for the check server", lambda: conn.compute.get_server(
                server.id), lambda s: s.status == "ACTIVE", timeout=300,
            failed=lambda s: s.status == "ERROR" and str(s.fault))
        address = [a["addr"] for addrs in server.addresses.values()
                   for a in addrs if a["version"] == 4][0]
        guest = ssh.SSHGuest(address, 22, user, key, command_prefix="sudo")
        guest.wait_until_reachable(600)
        try:
            yield guest
        finally:
            guest.close()
    finally:
        if server is not None:
            conn.compute.delete_server(server.id)
            conn.compute.wait_for_delete(server)
        conn.compute.delete_keypair(name, ignore_missing=True)

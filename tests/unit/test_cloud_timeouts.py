"""Every cloud session has a request timeout: an endpoint that accepts the
connection and never answers fails the step in seconds, in one line."""
import socket
import threading
import time

import pytest
from keystoneauth1.identity import v3

from imgfac_nova import config
from imgfac_nova.plugins import nova as nova_plugin
from imgfac_nova.plugins import provider_access
from novaimagebuilder import errors
from novaimagebuilder.machines import nova_connect
from novaimagebuilder.machines import nova_servers
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import backend  # noqa: F401 (fixture)
from tests.unit.test_nova_rescue import cloud  # noqa: F401 (fixture)


@pytest.fixture
def silent_endpoint():
    """``http://127.0.0.1:PORT``: accepts connections, reads, never
    answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except socket.timeout:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_caller_token_session_times_out(silent_endpoint):
    auth = v3.Token(auth_url=silent_endpoint + "/v3", token="t",
                    project_id="p")
    started = time.monotonic()
    with pytest.raises(errors.BuildError) as raised:
        nova_connect.connect(auth=auth, timeout=1)
    assert time.monotonic() - started < 15
    assert "\n" not in str(raised.value)


def test_a_provider_login_times_out(silent_endpoint):
    parsed = provider_access.parse_provider('{"auth_url": "%s/v3"}'
                                            % silent_endpoint)
    credentials = ("<provider_credentials><openstack_credentials>"
                   "<username>u</username><password>secret-pw</password>"
                   "</openstack_credentials></provider_credentials>")
    started = time.monotonic()
    with pytest.raises(provider_access.ProviderError) as raised:
        provider_access.connect(parsed, credentials, timeout=1)
    assert time.monotonic() - started < 15
    assert "secret-pw" not in str(raised.value)


def test_plugins_take_the_configured_timeout(config_file):
    conf = config.load([config_file])
    assert nova_plugin.NovaOS(conf).cloud_timeout == 300
    conf.set_override("cloud_request_timeout", 0)
    assert nova_plugin.NovaOS(conf).cloud_timeout is None


def test_a_snapshot_may_take_a_time_scaled_by_the_disk(
        cloud, backend):  # noqa: F811
    from tests.unit.test_nova_rescue import GLANCE
    from tests.unit.test_nova_rescue import SHUTOFF
    from tests.unit.test_nova_rescue import servers
    # The flavor's disk is 2 GiB: 600 s + 2 x 120 s by default.
    assert backend.capture_limit() == " (up to 14 min for 2 GiB)"
    backend.snapshot_timeout = (1, 0)
    cloud.post(NOVA + "servers/srv1/action", status_code=202,
               json={"image_id": "img1"})
    servers(cloud, SHUTOFF)
    cloud.get(GLANCE + "v2/images/img1",
              json={"id": "img1", "status": "saving", "name": "i"})
    deleted = cloud.delete(GLANCE + "v2/images/img1", status_code=204)
    started = time.monotonic()
    with pytest.raises(errors.WaitTimeout, match=r"^timed out waiting for "
                       r"the image snapshot img1 to become active \(after "
                       r"1 s\)$"):
        backend.capture(nova_servers.Server("srv1", "guest", "guest"), "image")
    assert time.monotonic() - started < 10
    assert deleted.called

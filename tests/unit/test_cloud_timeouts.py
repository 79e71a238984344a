"""Every cloud session has a request timeout: an endpoint that accepts the
connection and never answers fails the step in seconds, in one line."""
import socket
import threading
import time

import pytest
from keystoneauth1.identity import v3

from imgfac_nova import config
from imgfac_nova.plugins import nova as nova_plugin
from imgfac_nova.plugins import provider
from novaimagebuilder import errors
from novaimagebuilder import nova


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
        nova.connect(auth=auth, timeout=1)
    assert time.monotonic() - started < 15
    assert "\n" not in str(raised.value)


def test_a_provider_login_times_out(silent_endpoint):
    parsed = provider.parse_provider('{"auth_url": "%s/v3"}'
                                     % silent_endpoint)
    credentials = ("<provider_credentials><openstack_credentials>"
                   "<username>u</username><password>secret-pw</password>"
                   "</openstack_credentials></provider_credentials>")
    started = time.monotonic()
    with pytest.raises(provider.ProviderError) as raised:
        provider.connect(parsed, credentials, timeout=1)
    assert time.monotonic() - started < 15
    assert "secret-pw" not in str(raised.value)


def test_plugins_take_the_configured_timeout(config_file):
    conf = config.load([config_file])
    assert nova_plugin.NovaOS(conf).cloud_timeout == 300
    conf.set_override("cloud_request_timeout", 0)
    assert nova_plugin.NovaOS(conf).cloud_timeout is None

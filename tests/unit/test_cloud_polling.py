"""Kind to the cloud: the install wait polls the server's status every
poll and reads the console (an RPC to nova-compute) seldom, its tail only."""
import json

from novaimagebuilder import nova
from tests.unit.test_nova_rescue import ACTIVE
from tests.unit.test_nova_rescue import NOVA
from tests.unit.test_nova_rescue import SHUTOFF
from tests.unit.test_nova_rescue import backend  # noqa: F401 (fixture)
from tests.unit.test_nova_rescue import cloud  # noqa: F401 (fixture)
from tests.unit.test_nova_rescue import servers


def test_status_often_console_seldom(cloud, backend, monkeypatch):  # noqa: F811
    monkeypatch.setattr(nova, "CONSOLE_EVERY", 3600)
    servers(cloud, *[ACTIVE] * 5, SHUTOFF)
    cloud.post(NOVA + "servers/srv1/action", json={"output": "booting\n"})
    machine = nova.Server("srv1", "installer", None)
    backend.wait_powered_off(machine, "installing", 60, inactivity=600)
    gets = [r for r in cloud.request_history
            if r.method == "GET" and r.path == "/v2.1/servers/srv1"]
    reads = [json.loads(r.body) for r in cloud.request_history
             if r.method == "POST"]
    assert len(gets) == 6
    assert reads == [{"os-getConsoleOutput": {"length": nova.CONSOLE_TAIL}}]

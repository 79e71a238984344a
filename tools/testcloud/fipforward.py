"""Floating IP forwarder of the test cloud (standard library only).

There is no L3 agent: Neutron only records floating IPs. This daemon polls
Neutron for floating IPs associated with a fixed IP and forwards TCP
connections made to FLOATING_IP:22 to FIXED_IP:22, where the compute driver
publishes the guest's SSH. Both addresses are loopback addresses, so
nothing leaves the machine. When the floating IP is disassociated or
deleted, its listener and open connections are closed.

    python3 -m testcloud.fipforward STATE_DIR
"""
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

from testcloud import credentials
from testcloud import layout as names

PORTS = (22,)
POLL_SECONDS = 2.0
TOKEN_LIFETIME = 1800
KEYSTONE = "http://127.0.0.1:%d/v3" % names.PORTS["keystone"]
NEUTRON = "http://127.0.0.1:%d/v2.0" % names.PORTS["neutron"]


def log(message):
    print("%s %s" % (time.strftime("%F %T"), message), flush=True)


class Neutron:
    """Just enough of Keystone and Neutron: list floating IPs as admin."""

    def __init__(self, password):
        self.password = password
        self.token = None
        self.token_time = 0

    def _authenticate(self):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": names.ADMIN, "domain": {"id": "default"},
                "password": self.password}}},
            "scope": {"project": {"name": "admin",
                                  "domain": {"id": "default"}}}}}
        request = urllib.request.Request(
            KEYSTONE + "/auth/tokens", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            self.token = response.headers["X-Subject-Token"]
        self.token_time = time.monotonic()

    def floating_ips(self):
        """{floating address: fixed address} of associated floating IPs."""
        if not self.token or time.monotonic() - self.token_time > TOKEN_LIFETIME:
            self._authenticate()
        request = urllib.request.Request(
            NEUTRON + "/floatingips", headers={"X-Auth-Token": self.token})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                self.token = None
            raise
        return {f["floating_ip_address"]: f["fixed_ip_address"]
                for f in data["floatingips"] if f.get("fixed_ip_address")}


class Forward:
    """Listen on one (address, port) and relay each connection to a target."""

    def __init__(self, listen, target):
        self.listen = listen
        self.target = target
        self.closed = False
        self.connections = set()
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.server.bind(listen)
        except OSError:
            self.server.close()
            raise
        self.server.listen(16)
        self.server.settimeout(1.0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._relay, args=(client,),
                             daemon=True).start()

    def _relay(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError as e:
            log("%s:%d -> %s:%d refused: %s"
                % (self.listen + self.target + (e,)))
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        with self.lock:
            if self.closed:
                client.close()
                upstream.close()
                return
            self.connections.update((client, upstream))
        t = threading.Thread(target=_pump, args=(upstream, client),
                             daemon=True)
        t.start()
        _pump(client, upstream)
        t.join()
        with self.lock:
            self.connections.difference_update((client, upstream))
        client.close()
        upstream.close()

    def close(self):
        with self.lock:
            self.closed = True
            for s in self.connections:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.server.close()


def _pump(source, sink):
    """Copy bytes until end of stream, then pass the end on."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(neutron):
    forwards = {}
    while True:
        try:
            wanted = {}
            for fip, fixed in neutron.floating_ips().items():
                for port in PORTS:
                    wanted[(fip, port)] = (fixed, port)
        except (OSError, ValueError, KeyError) as e:
            log("cannot list floating IPs: %s" % e)
            time.sleep(POLL_SECONDS)
            continue
        for listen, forward in list(forwards.items()):
            if wanted.get(listen) != forward.target:
                forward.close()
                del forwards[listen]
                log("stopped %s:%d -> %s:%d" % (listen + forward.target))
        for listen, target in wanted.items():
            if listen not in forwards:
                try:
                    forwards[listen] = Forward(listen, target)
                    log("forwarding %s:%d -> %s:%d" % (listen + target))
                except OSError as e:
                    log("cannot listen on %s:%d: %s" % (listen + (e,)))
        time.sleep(POLL_SECONDS)


def main(argv):
    layout = names.Layout(argv[1] if len(argv) > 1 else None)
    log("floating IP forwarder for %s" % layout.root)
    serve(Neutron(credentials.load(layout)["admin"]))


if __name__ == "__main__":
    main(sys.argv)

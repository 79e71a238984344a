"""Where everything of the test cloud lives, and the fixed names and ports."""
import os

DEFAULT_DIR = "/var/lib/imgfac-nova/test-cloud"
HOST = "127.0.0.1"
REGION = "RegionOne"
COMPUTE_HOST = "imgfac-test-compute"
VOLUME_HOST = "imgfac-test-volume"

PORTS = {
    "keystone": 5000,
    "glance": 9292,
    "placement": 8778,
    "nova-api": 8774,
    "neutron": 9696,
    "cinder-api": 8776,
    "ceph-mon": 6789,       # msgr v1: what Cinder hands to Nova
    "ceph-mon-v2": 3300,
    "www": 8090,
    "rabbitmq": 5682,
    "rabbitmq-dist": 25682,
}

#: The Keystone catalog: service name -> (type, port, path); each service
#: also has a service user of that name.
CATALOG = {
    "glance": ("image", PORTS["glance"], ""),
    "placement": ("placement", PORTS["placement"], ""),
    "nova": ("compute", PORTS["nova-api"], "/v2.1"),
    "neutron": ("network", PORTS["neutron"], ""),
    "cinder": ("block-storage", PORTS["cinder-api"], "/v3"),
}

PROJECT = "imgfac"
USER = "imgfac"
ADMIN = "admin"
CLOUD = "imgfac-test"
ADMIN_CLOUD = "imgfac-test-admin"

TENANT_NET = "imgfac-net"
TENANT_CIDR = "127.42.0.0/16"
PUBLIC_NET = "public"
PUBLIC_CIDR = "127.43.0.0/24"


class Layout:
    """Paths under the state directory (IMGFAC_TEST_CLOUD_DIR)."""

    def __init__(self, root=None):
        self.root = os.path.abspath(
            root or os.environ.get("IMGFAC_TEST_CLOUD_DIR") or DEFAULT_DIR)
        self.venv = self.path("venv")
        self.etc = self.path("etc")
        self.log = self.path("log")
        self.run = self.path("run")
        self.stamps = self.path("stamps")
        self.www = self.path("www")
        self.mysql_data = self.path("mysql", "data")
        self.mysql_socket = self.path("run", "mysqld.sock")
        self.clouds_yaml = self.path("clouds.yaml")
        self.openrc = self.path("openrc")
        self.secrets = self.path("secrets.json")

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def venv_bin(self, name):
        return os.path.join(self.venv, "bin", name)

    def etc_file(self, service, name):
        return os.path.join(self.etc, service, name)

    def logfile(self, name):
        return os.path.join(self.log, name + ".log")

    def pidfile(self, name):
        return os.path.join(self.run, name + ".pid")

    def site_packages(self):
        lib = os.path.join(self.venv, "lib")
        for entry in sorted(os.listdir(lib)):
            if entry.startswith("python"):
                return os.path.join(lib, entry, "site-packages")
        raise RuntimeError("no site-packages in %s" % lib)

    def make_dirs(self):
        for d in (self.root, self.etc, self.log, self.run, self.stamps,
                  self.www):
            os.makedirs(d, exist_ok=True)

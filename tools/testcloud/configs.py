"""Configuration files of the test cloud's services, rendered from dicts.

`write_all` renders every file and writes only what changed; it returns the
set of paths that changed so that `up` restarts exactly the affected
services.
"""
import os

from testcloud import ceph
from testcloud import layout as names

KEYSTONE_URL = "http://127.0.0.1:%d" % names.PORTS["keystone"]


def render_ini(sections):
    """INI text from {section: {option: value}} (lists become a,b,c)."""
    out = []
    for section, options in sections.items():
        out.append("[%s]" % section)
        for key, value in options.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                value = ",".join(value)
            out.append("%s = %s" % (key, value))
        out.append("")
    return "\n".join(out)


def write_if_changed(path, text, mode=0o600):
    """Write text to path unless it holds exactly that; True if written."""
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return True


def _read(path):
    with open(path) as f:
        return f.read()


class Renderer:
    """Knows the layout and passwords; renders each service's files."""

    def __init__(self, layout, secrets, compute_driver, compute_extra=""):
        self.layout = layout
        self.secrets = secrets
        self.compute_driver = compute_driver
        self.compute_extra = compute_extra

    # -- shared pieces ---------------------------------------------------
    def db_url(self, database):
        return ("mysql+pymysql://imgfac:%s@localhost/%s?unix_socket=%s"
                "&charset=utf8" % (self.secrets["database"], database,
                                   self.layout.mysql_socket))

    def transport_url(self):
        return "rabbit://imgfac:%s@127.0.0.1:%d/" % (
            self.secrets["rabbitmq"], names.PORTS["rabbitmq"])

    def service_auth(self, user):
        """keystoneauth password options for a service user."""
        return {
            "auth_type": "password",
            "auth_url": KEYSTONE_URL,
            "project_name": "service",
            "project_domain_name": "Default",
            "username": user,
            "user_domain_name": "Default",
            "password": self.secrets[user],
            "region_name": names.REGION,
        }

    def authtoken(self, user):
        options = {"www_authenticate_uri": KEYSTONE_URL}
        options.update(self.service_auth(user))
        del options["region_name"]
        return options

    def common(self, service):
        return {
            "oslo_concurrency": {
                "lock_path": self.layout.path(service, "lock")},
            "oslo_messaging_notifications": {"driver": "noop"},
        }

    def venv_etc(self, *parts):
        return os.path.join(self.layout.venv, "etc", *parts)

    # -- services -----------------------------------------------------------
    def keystone(self):
        keys = self.layout.path("keystone")
        return {
            "DEFAULT": {"use_stderr": True},
            "database": {"connection": self.db_url("keystone")},
            "token": {"provider": "fernet"},
            "fernet_tokens": {"key_repository": keys + "/fernet-keys"},
            "fernet_receipts": {"key_repository": keys + "/fernet-keys"},
            "credential": {"key_repository": keys + "/credential-keys"},
            "oslo_messaging_notifications": {"driver": "noop"},
        }

    def glance(self):
        data = self.layout.path("glance")
        conf = {
            "DEFAULT": {
                "use_stderr": True,
                "enabled_backends": "file:file",
                "worker_self_reference_url": "http://127.0.0.1:%d"
                % names.PORTS["glance"],
                "enabled_import_methods": "[glance-direct,web-download]",
            },
            "database": {"connection": self.db_url("glance")},
            "glance_store": {"default_backend": "file"},
            "file": {"filesystem_store_datadir": data + "/images"},
            "os_glance_staging_store": {
                "filesystem_store_datadir": data + "/staging"},
            "os_glance_tasks_store": {
                "filesystem_store_datadir": data + "/tasks"},
            "paste_deploy": {
                "flavor": "keystone",
                "config_file": self.venv_etc("glance",
                                             "glance-api-paste.ini")},
            "keystone_authtoken": self.authtoken("glance"),
        }
        conf.update(self.common("glance"))
        return conf

    def placement(self):
        return {
            "DEFAULT": {"use_stderr": True},
            "api": {"auth_strategy": "keystone"},
            "placement_database": {"connection": self.db_url("placement")},
            "keystone_authtoken": self.authtoken("placement"),
        }

    def nova(self):
        state = self.layout.path("nova")
        # Nova's calls to Cinder as itself (devstack's set-up); Nova finds
        # Cinder by the catalog type volumev3, block-storage's alias.
        cinder = self.service_auth("nova")
        cinder["os_region_name"] = cinder.pop("region_name")
        conf = {
            "DEFAULT": {
                "host": names.COMPUTE_HOST,
                "my_ip": "127.0.0.1",
                "state_path": state,
                "instances_path": state + "/instances",
                "transport_url": self.transport_url(),
                "compute_driver": self.compute_driver,
                "enabled_apis": "osapi_compute",
                "vif_plugging_is_fatal": False,
                "vif_plugging_timeout": 0,
            },
            "api": {"auth_strategy": "keystone"},
            "wsgi": {"api_paste_config": self.layout.etc_file(
                "nova", "api-paste.ini")},
            "api_database": {"connection": self.db_url("nova_api")},
            "database": {"connection": self.db_url("nova")},
            "keystone_authtoken": self.authtoken("nova"),
            "placement": self.service_auth("nova"),
            "neutron": self.service_auth("nova"),
            # Neutron lets only a service token delete a server's port.
            "service_user": dict(self.service_auth("nova"),
                                 send_service_user_token=True),
            "glance": {"region_name": names.REGION},
            "cinder": cinder,
            "scheduler": {"workers": 1,
                          "discover_hosts_in_cells_interval": 5},
            "conductor": {"workers": 1},
        }
        conf.update(self.common("nova"))
        return conf

    def neutron(self):
        conf = {
            "DEFAULT": {
                "use_stderr": True,
                "core_plugin": "ml2",
                "service_plugins": "router",
                "auth_strategy": "keystone",
                "transport_url": self.transport_url(),
                "api_paste_config": self.venv_etc("neutron",
                                                  "api-paste.ini"),
                "state_path": self.layout.path("neutron"),
                "notify_nova_on_port_status_changes": True,
                "notify_nova_on_port_data_changes": True,
                "dhcp_agent_notification": False,
                "rpc_workers": 0,
            },
            "database": {"connection": self.db_url("neutron")},
            "keystone_authtoken": self.authtoken("neutron"),
            "nova": self.service_auth("neutron"),
        }
        conf.update(self.common("neutron"))
        return conf

    def cinder(self):
        state = self.layout.path("cinder")
        conf = {
            "DEFAULT": {
                "use_stderr": True,
                "host": names.VOLUME_HOST,
                "my_ip": names.HOST,
                "state_path": state,
                "image_conversion_dir": state + "/conversion",
                "transport_url": self.transport_url(),
                "auth_strategy": "keystone",
                "enabled_backends": "ceph",
                # which list filters the API takes (none without the file)
                "resource_query_filters_file": self.venv_etc(
                    "cinder", "resource_filters.json"),
            },
            "database": {"connection": self.db_url("cinder")},
            "keystone_authtoken": self.authtoken("cinder"),
            "nova": self.service_auth("cinder"),
            # rbd_user unset: auth none (ceph.py), so Cinder's connection
            # info says auth_enabled false.
            "ceph": {
                "volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                "volume_backend_name": "ceph",
                "rbd_ceph_conf": ceph.conf_path(self.layout),
                "rbd_pool": "volumes",
                "rbd_flatten_volume_from_snapshot": False,
                "report_discard_supported": True,
            },
        }
        # Its privileged helpers run from the venv, not through sudo
        # (which could not find them): the services run as root anyway.
        helper = "%s --config-file %s" % (
            self.layout.venv_bin("privsep-helper"),
            self.layout.etc_file("cinder", "cinder.conf"))
        for section in ("cinder_sys_admin", "privsep_osbrick"):
            conf[section] = {"helper_command": helper}
        conf.update(self.common("cinder"))
        return conf

    def ml2(self):
        return {
            "ml2": {
                "type_drivers": "flat,vxlan",
                "tenant_network_types": "vxlan",
                "mechanism_drivers": "imgfac_bindall",
                "extension_drivers": "port_security",
            },
            "ml2_type_flat": {"flat_networks": "public"},
            "ml2_type_vxlan": {"vni_ranges": "1:1000"},
            "securitygroup": {"enable_security_group": True},
        }

    def rabbitmq(self):
        return "\n".join([
            "listeners.tcp.1 = 127.0.0.1:%d" % names.PORTS["rabbitmq"],
            "default_user = imgfac",
            "default_pass = %s" % self.secrets["rabbitmq"],
            "loopback_users = none",
            "log.console = true",
            "log.file = false",
            ""])

    def uwsgi(self, port, module, env, extra=None):
        lines = [
            "[uwsgi]",
            "http-socket = 127.0.0.1:%d" % port,
            "module = %s" % module,
            "home = %s" % self.layout.venv,
            "master = true",
            "processes = 1",
            "threads = 4",
            "enable-threads = true",
            "lazy-apps = true",
            "die-on-term = true",
            "need-app = true",
            "buffer-size = 65535",
            "add-header = Connection: close",
        ]
        lines += ["env = %s=%s" % kv for kv in env.items()]
        lines += extra or []
        return "\n".join(lines) + "\n"

    def files(self):
        """{path: text} for every configuration file."""
        etc = self.layout.etc_file
        nova = render_ini(self.nova())
        if self.compute_extra:
            nova += "\n" + self.compute_extra.replace(
                "@STATE_DIR@", self.layout.root)
        files = {
            etc("keystone", "keystone.conf"): render_ini(self.keystone()),
            etc("glance", "glance-api.conf"): render_ini(self.glance()),
            etc("placement", "placement.conf"): render_ini(self.placement()),
            etc("nova", "nova.conf"): nova,
            # nova's WSGI app takes its paste file from its config directory
            etc("nova", "api-paste.ini"): _read(self.venv_etc(
                "nova", "api-paste.ini")),
            etc("neutron", "neutron.conf"): render_ini(self.neutron()),
            etc("neutron", "ml2_conf.ini"): render_ini(self.ml2()),
            etc("cinder", "cinder.conf"): render_ini(self.cinder()),
            etc("cinder", "api-paste.ini"): _read(self.venv_etc(
                "cinder", "api-paste.ini")),
            ceph.conf_path(self.layout): render_ini(
                ceph.conf_sections(self.layout)),
            etc("rabbitmq", "rabbitmq.conf"): self.rabbitmq(),
            etc("rabbitmq", "enabled_plugins"): "[].\n",
            etc("rabbitmq", "rabbitmq-env.conf"): "",
        }
        wsgi = {
            "keystone": ("keystone.wsgi.api:application",
                         {"OS_KEYSTONE_CONFIG_FILES":
                          etc("keystone", "keystone.conf")}, None),
            "glance": ("glance.wsgi.api:application",
                       {"OS_GLANCE_CONFIG_DIR": self.layout.etc + "/glance"},
                       ["http-auto-chunked = true", "http-raw-body = true",
                        "chunked-input-limit = 10485760"]),
            "placement": ("placement.wsgi.api:application",
                          {"OS_PLACEMENT_CONFIG_DIR":
                           self.layout.etc + "/placement"}, None),
            "nova-api": ("nova.wsgi.osapi_compute:application",
                         {"OS_NOVA_CONFIG_DIR": self.layout.etc + "/nova"},
                         None),
            "neutron": ("neutron.wsgi.api:application",
                        {"OS_NEUTRON_CONFIG_DIR":
                         self.layout.etc + "/neutron",
                         "OS_NEUTRON_CONFIG_FILES":
                         "neutron.conf;ml2_conf.ini"}, None),
            # cinder's WSGI app parses its arguments for its config file
            "cinder-api": ("cinder.wsgi.api:application", {},
                           ["pyargv = --config-file %s"
                            % etc("cinder", "cinder.conf")]),
        }
        for name, (module, env, extra) in wsgi.items():
            files[etc("uwsgi", name + ".ini")] = self.uwsgi(
                names.PORTS[name], module, env, extra)
        return files

    def write_all(self):
        changed = set()
        for path, text in self.files().items():
            if write_if_changed(path, text):
                changed.add(path)
        return changed

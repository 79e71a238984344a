"""The test cloud as a whole: its daemons and the up / down / status steps."""
import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import time
import traceback

from testcloud import ceph
from testcloud import configs
from testcloud import credentials
from testcloud import database
from testcloud import install
from testcloud import layout as names
from testcloud.process import Daemon, ServiceError, rss_kib

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CloudError(RuntimeError):
    """`up` could not bring the cloud up; the message says what failed."""


class Cloud:
    def __init__(self, layout, say=print):
        self.layout = layout
        self.say = say
        self.setup_log = layout.logfile("setup")

    # -- daemons ------------------------------------------------------------
    def daemons(self):
        """Every daemon, in start order."""
        L = self.layout
        nova_conf = L.etc_file("nova", "nova.conf")
        cinder_conf = L.etc_file("cinder", "cinder.conf")
        rabbit_home = L.path("rabbitmq")
        rabbit_marker = "-imgfac_test_cloud %s" % L.root

        def uwsgi(name, configs_):
            ini = L.etc_file("uwsgi", name + ".ini")
            argv = [L.venv_bin("uwsgi"), "--ini", ini]
            return Daemon(L, name, argv, " ".join(argv),
                          port=names.PORTS[name], http=True,
                          configs=(ini,) + configs_)

        def service(binary, conf):
            argv = [L.venv_bin(binary), "--config-file", conf]
            return Daemon(L, binary, argv, " ".join(argv), configs=(conf,))

        www = [sys.executable, "-m", "testcloud.webserver",
               str(names.PORTS["www"]), L.www]
        # What served the files before the mirror relay: replaced on `up`.
        plain_www = "-m http.server %d --bind 127.0.0.1 --directory %s" % (
            names.PORTS["www"], L.www)
        fip = [sys.executable, "-m", "testcloud.fipforward", L.root]
        return [
            Daemon(L, "mariadb", database.mariadb_argv(L),
                   "--datadir=%s " % L.mysql_data,
                   socket_path=L.mysql_socket),
            Daemon(L, "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
                   rabbit_marker, port=names.PORTS["rabbitmq"],
                   configs=(L.etc_file("rabbitmq", "rabbitmq.conf"),),
                   env={
                       "HOME": rabbit_home,
                       "RUNNING_UNDER_SYSTEMD": "true",
                       "RABBITMQ_NODENAME": "imgfac-test@localhost",
                       "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                       "RABBITMQ_NODE_PORT": str(names.PORTS["rabbitmq"]),
                       "RABBITMQ_DIST_PORT": str(names.PORTS["rabbitmq-dist"]),
                       "ERL_EPMD_ADDRESS": "127.0.0.1",
                       "RABBITMQ_MNESIA_BASE": rabbit_home + "/mnesia",
                       "RABBITMQ_LOG_BASE": L.log,
                       "RABBITMQ_LOGS": "-",
                       "RABBITMQ_CONFIG_FILE":
                           L.etc_file("rabbitmq", "rabbitmq.conf"),
                       "RABBITMQ_CONF_ENV_FILE":
                           L.etc_file("rabbitmq", "rabbitmq-env.conf"),
                       "RABBITMQ_ENABLED_PLUGINS_FILE":
                           L.etc_file("rabbitmq", "enabled_plugins"),
                       "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                           "-kernel inet_dist_use_interface {127,0,0,1} "
                           + rabbit_marker,
                   }),
            *ceph.daemons(L),
            uwsgi("keystone", (L.etc_file("keystone", "keystone.conf"),)),
            uwsgi("glance", (L.etc_file("glance", "glance-api.conf"),)),
            uwsgi("placement", (L.etc_file("placement", "placement.conf"),)),
            uwsgi("nova-api", (nova_conf,)),
            uwsgi("cinder-api", (cinder_conf, L.etc_file(
                "cinder", "api-paste.ini"))),
            uwsgi("neutron", (L.etc_file("neutron", "neutron.conf"),
                              L.etc_file("neutron", "ml2_conf.ini"))),
            service("nova-conductor", nova_conf),
            service("nova-scheduler", nova_conf),
            service("cinder-scheduler", cinder_conf),
            service("cinder-volume", cinder_conf),
            service("nova-compute", nova_conf),
            Daemon(L, "www", www, " ".join(www[1:]), port=names.PORTS["www"],
                   http=True, env={"PYTHONPATH": TOOLS_DIR},
                   replaces=(plain_www,)),
            Daemon(L, "fip-forwarder", fip, " ".join(fip[1:]),
                   env={"PYTHONPATH": TOOLS_DIR}),
        ]

    def daemon(self, name):
        return next(d for d in self.daemons() if d.name == name)

    # -- up -------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, name):
        """A named step of up/down: any failure in it becomes one CloudError
        line naming the step and the log, with the traceback in the log."""
        try:
            yield
        except Exception as exc:
            with open(self.setup_log, "a") as log:
                log.write("\n%s failed:\n%s" % (name, traceback.format_exc()))
            message = str(exc).strip().splitlines()
            message = message[0] if message else type(exc).__name__
            if self.setup_log not in message:
                message += " (log: %s)" % self.setup_log
            raise CloudError("%s: %s" % (name, message)) from None

    def up(self, guests=True):
        started = time.monotonic()
        L = self.layout
        with self.step("state directory"):
            L.make_dirs()
            for sub in ("keystone", "glance", "nova/instances", "neutron",
                        "rabbitmq", "placement", "cinder", "ceph"):
                os.makedirs(L.path(sub), exist_ok=True)
        with self.step("Debian packages"):
            install.ensure_packages(self.setup_log, self.say)
        with self.step("OpenStack virtualenv"):
            install.ensure_venv(L, self.setup_log, self.say)
        with self.step("drivers and configuration"):
            if install.ensure_ml2_driver(L, self.setup_log) and \
                    self.daemon("neutron").stop():
                self.say("ML2 driver changed: restarting neutron")
            driver_changed = install.ensure_nova_driver(L)
            if install.ensure_ceph_bindings(L) and \
                    self.daemon("cinder-volume").stop():
                self.say("Ceph bindings linked: restarting cinder-volume")
            secrets = credentials.load(L)
            driver, extra = install.compute_driver()
            changed = configs.Renderer(L, secrets, driver, extra).write_all()
            if driver_changed:
                self.say("compute driver changed: restarting nova-compute")
                self.daemon("nova-compute").stop()
            self.restart_changed(changed)
        with self.step("databases"):
            fresh_db = database.initialize(L, self.setup_log)
            self.start(["mariadb", "rabbitmq"])
            database.create_databases(L, secrets["database"])
            database.sync_schemas(L, self.setup_log, self.say)
        with self.step("ceph"):
            ceph.make_monitor(L, self.setup_log)
            self.start(["ceph-mon", "ceph-mgr"])
            if ceph.make_osd(L, self.setup_log):
                self.say("made the Ceph OSD")
            self.start(["ceph-osd"])
            ceph.wait_osd_up(L, self.daemon("ceph-osd"))
            ceph.ensure_pools(L, self.say)
        with self.step("keystone"):
            self.keystone_setup(secrets)
            self.start(["keystone"])
            self.provision_identity()
        with self.step("services"):
            self.start(["glance", "placement", "nova-api", "cinder-api",
                        "neutron", "nova-conductor", "nova-scheduler",
                        "cinder-scheduler", "cinder-volume", "nova-compute",
                        "www", "fip-forwarder"])
            self.wait_compute()
        steps = ["resources", "compute", "volumes"]
        with self.step("test guests"):
            if guests and self.build_guests():
                steps.append("images")
        with self.step("provisioning"):
            self.provision(*steps)
            self.write_client_files(secrets)
        self.say("test cloud up in %.1f s%s" % (
            time.monotonic() - started, " (new database)" if fresh_db else ""))

    def restart_changed(self, changed):
        for daemon in reversed(self.daemons()):
            if set(daemon.configs) & changed and daemon.stop():
                self.say("configuration changed: restarting %s" % daemon.name)

    def start(self, names_, timeout=180):
        daemons = [self.daemon(n) for n in names_]
        for d in daemons:
            if d.start():
                self.say("started %s" % d.name)
        for d in daemons:
            try:
                d.wait_ready(timeout)
            except ServiceError as e:
                raise CloudError(str(e))

    def keystone_setup(self, secrets):
        """Fernet/credential keys and the bootstrap admin (once per database)."""
        L = self.layout
        manage = [L.venv_bin("keystone-manage"), "--config-file",
                  L.etc_file("keystone", "keystone.conf")]
        keys = L.path("keystone")
        # A finished set-up holds keys 0 (staged) and 1 (primary, written by
        # the rotation that ends it).
        if not os.path.exists(keys + "/fernet-keys/1"):
            install.run(manage + ["fernet_setup", "--keystone-user", "root",
                                  "--keystone-group", "root"], self.setup_log)
        if not os.path.exists(keys + "/credential-keys/1"):
            install.run(manage + ["credential_setup", "--keystone-user",
                                  "root", "--keystone-group", "root"],
                        self.setup_log)
        stamp = os.path.join(L.stamps, "db-keystone-bootstrap")
        if os.path.exists(stamp):
            return
        url = configs.KEYSTONE_URL + "/v3/"
        env = dict(os.environ, OS_BOOTSTRAP_PASSWORD=secrets["admin"])
        install.run(manage + [
            "bootstrap", "--bootstrap-username", names.ADMIN,
            "--bootstrap-project-name", "admin",
            "--bootstrap-role-name", "admin",
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", names.REGION,
            "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
            "--bootstrap-internal-url", url], self.setup_log, env=env)
        open(stamp, "w").close()

    def provision_identity(self):
        """Accounts and catalog: once per database (they live in it) and
        again when the catalog gains a service."""
        stamp = os.path.join(self.layout.stamps, "db-provision-identity")
        catalog = " ".join(sorted(names.CATALOG)) + "\n"
        if install.read(stamp) != catalog:
            self.provision("identity")
            with open(stamp, "w") as f:
                f.write(catalog)

    def provision(self, *steps):
        """Run provisioning steps with the venv's python (openstacksdk)."""
        env = dict(os.environ, PYTHONPATH=TOOLS_DIR,
                   IMGFAC_TEST_CLOUD_DIR=self.layout.root)
        result = subprocess.run(
            [self.layout.venv_bin("python"), "-m", "testcloud.provision"]
            + list(steps),
            env=env, capture_output=True, text=True)
        with open(self.setup_log, "a") as log:
            log.write(result.stdout + result.stderr)
        for line in result.stdout.splitlines():
            self.say(line)
        if result.returncode:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise CloudError("provisioning (%s) failed:\n%s"
                             % (" ".join(steps), tail))

    def wait_compute(self, timeout=180):
        """Wait for a nova-compute heartbeat newer than its start, then map it.

        A restarted nova-compute looks "up" on its old heartbeat for a while;
        servers booted before the new heartbeat go to ERROR.
        """
        compute = self.daemon("nova-compute")
        since = datetime.datetime.fromtimestamp(
            compute.started_at(), datetime.timezone.utc).replace(tzinfo=None)
        deadline = time.monotonic() + timeout
        query = ("SELECT updated_at FROM nova.services WHERE "
                 "`binary`='nova-compute' AND host='%s' AND deleted=0;\n"
                 % names.COMPUTE_HOST)
        while True:
            beat = database.sql(self.layout, query).strip()
            if beat and beat != "NULL" and datetime.datetime.fromisoformat(
                    beat) >= since.replace(microsecond=0):
                break
            if not compute.pid():
                raise CloudError("nova-compute exited; end of %s:\n%s"
                                 % (compute.logfile, compute.log_tail()))
            if time.monotonic() > deadline:
                raise CloudError("nova-compute sent no heartbeat in %d s; "
                                 "end of %s:\n%s" % (timeout, compute.logfile,
                                                     compute.log_tail()))
            time.sleep(1)
        mapped = database.sql(self.layout,
                              "SELECT host FROM nova_api.host_mappings;\n")
        if names.COMPUTE_HOST not in mapped.split():
            install.run([self.layout.venv_bin("nova-manage"), "--config-file",
                         self.layout.etc_file("nova", "nova.conf"), "cell_v2",
                         "discover_hosts"], self.setup_log)

    def build_guests(self):
        """Build (or reuse) the test guest images when guests.py exists."""
        if not os.path.exists(os.path.join(TOOLS_DIR, "testcloud",
                                           "guests.py")):
            return False
        from testcloud import guests
        try:
            guests.build(self.layout.root)
        except Exception as e:  # its own errors, subprocess failures, OSError
            raise CloudError("building the test guests failed: %s: %s"
                             % (type(e).__name__, e))
        return True

    def write_client_files(self, secrets):
        auth_url = configs.KEYSTONE_URL + "/v3"
        entries = {
            names.CLOUD: (names.USER, secrets["user"], names.PROJECT),
            names.ADMIN_CLOUD: (names.ADMIN, secrets["admin"], "admin"),
        }
        lines = ["clouds:"]
        for cloud, (user, password, project) in entries.items():
            lines += [
                "  %s:" % cloud,
                "    auth:",
                "      auth_url: %s" % auth_url,
                "      username: %s" % user,
                "      password: '%s'" % password,
                "      project_name: %s" % project,
                "      user_domain_name: Default",
                "      project_domain_name: Default",
                "    region_name: %s" % names.REGION,
                "    identity_api_version: 3",
                "    interface: public",
            ]
        configs.write_if_changed(self.layout.clouds_yaml,
                                 "\n".join(lines) + "\n")
        user, password, project = entries[names.CLOUD]
        openrc = [
            "# Test cloud credentials (non-admin user %s)" % user,
            "export OS_AUTH_URL=%s" % auth_url,
            "export OS_USERNAME=%s" % user,
            "export OS_PASSWORD='%s'" % password,
            "export OS_PROJECT_NAME=%s" % project,
            "export OS_USER_DOMAIN_NAME=Default",
            "export OS_PROJECT_DOMAIN_NAME=Default",
            "export OS_REGION_NAME=%s" % names.REGION,
            "export OS_IDENTITY_API_VERSION=3",
        ]
        configs.write_if_changed(self.layout.openrc, "\n".join(openrc) + "\n")

    # -- down / status ------------------------------------------------------
    def down(self):
        with self.step("stopping the services"):
            for daemon in reversed(self.daemons()):
                if daemon.stop():
                    self.say("stopped %s" % daemon.name)
        with self.step("stopping the guests"):
            self.stop_guests()
            self.stop_idle_epmd()

    def stop_guests(self):
        """Kill the QEMU guests, which outlive nova-compute on purpose; a pid
        counts only while its command line names the instance directory."""
        instances = self.layout.path("nova", "instances")
        for name in sorted(os.listdir(instances)) if os.path.isdir(
                instances) else ():
            try:
                with open(os.path.join(instances, name, "qemu.pid")) as f:
                    pid = int(f.read().strip())
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmdline = f.read()
            except (OSError, ValueError):
                continue
            if name.encode() in cmdline:
                os.kill(pid, 9)
                self.say("stopped guest %s" % name)

    def stop_idle_epmd(self):
        """RabbitMQ leaves Erlang's port mapper behind; stop it if no
        Erlang node is registered with it any more."""
        if not shutil.which("epmd"):
            return
        names_ = subprocess.run(["epmd", "-names"], capture_output=True,
                                text=True)
        if names_.returncode == 0 and "name " not in names_.stdout:
            subprocess.run(["epmd", "-kill"], capture_output=True)
            self.say("stopped epmd")

    def status(self):
        """[(name, state, pid, address, rss MiB)] for every daemon."""
        rows = []
        for daemon in self.daemons():
            pid = daemon.pid()
            if not pid:
                state = "down"
            else:
                state = "up" if daemon.answering() else "starting"
            rss = rss_kib(pid) // 1024 if pid else 0
            rows.append((daemon.name, state, pid or "-", daemon.address, rss))
        return rows

    def env_lines(self):
        return ["export OS_CLIENT_CONFIG_FILE=%s" % self.layout.clouds_yaml,
                "export OS_CLOUD=%s" % names.CLOUD]

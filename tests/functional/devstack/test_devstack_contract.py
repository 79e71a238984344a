"""The devstack plugin against devstack's real function library.

contract.sh sources DEVSTACK_DIR's stackrc, functions, lib/infra and
lib/keystone, then our settings and every phase of devstack/plugin.sh, as
stack.sh, unstack.sh and clean.sh do; the test cloud stands for the
Keystone, Glance, Nova and Neutron devstack would run. Then we look at what
the phases left: the package in devstack's virtualenv under
upper-constraints, imgfac-nova.conf, the flavor and security group in the
cloud, the smoke build's image and logs, the daemon's service user in the
test cloud's Keystone, its [keystone_authtoken] (whose credentials must
validate a user's token there, as auth_token does) and the imgfac-nova-api
process run_process started, answering its v2 API with Keystone tokens.
With IMGFAC_NOVA_WORKERS=2 (as the Zuul job): ZooKeeper and two workers as
devstack services, the smoke build run by one of them.
"""
import configparser
import json
import os
import secrets
import socket
import subprocess
import uuid

import openstack
import openstack.config
import pytest
import requests
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEVSTACK_DIR = os.environ.get("DEVSTACK_DIR", "")
REQUIREMENTS_DIR = os.environ.get("REQUIREMENTS_DIR", "")


class Stack:
    """One contract.sh run: its sandbox, names and results."""

    def __init__(self, root, test_cloud):
        self.root = root
        self.dest = os.path.join(root, "stack")
        self.data = os.path.join(self.dest, "data", "imgfac-nova")
        self.logs = os.path.join(self.dest, "logs")
        self.conf_dir = os.path.join(self.dest, "etc", "imgfac-nova")
        self.conf = os.path.join(self.conf_dir, "imgfac-nova.conf")
        self.venv = os.path.join(self.dest, "data", "venv")
        suffix = uuid.uuid4().hex[:8]
        self.flavor = "imgfac-dsc-" + suffix
        self.secgroup = "imgfac-dsc-ssh-" + suffix
        self.service_user = "imgfac-dsc-" + suffix
        # The builds run in a project of their own, on the test cloud's
        # network shared with it: other tests' clean-ups in project imgfac
        # stay out of its way, and its objects out of theirs.
        self.project = "imgfac-dsc-" + suffix
        self.user = "imgfac-dsc-user-" + suffix
        self.password = secrets.token_hex(16)
        self.api_port = _free_port()
        self.zookeeper_port = _free_port()
        self.clouds_yaml = os.path.join(root, "clouds.yaml")
        self.test_cloud = test_cloud
        self.output = {}
        self.smoke_values = {}

    def write_clouds_yaml(self):
        """devstack's cloud names (write_clouds_yaml) for the test cloud."""
        with open(self.test_cloud.clouds_yaml) as f:
            clouds = yaml.safe_load(f)["clouds"]
        admin = clouds["imgfac-test-admin"]
        user = json.loads(json.dumps(admin))
        user["auth"].update(username=self.user, password=self.password,
                            project_name=self.project)
        system = json.loads(json.dumps(admin))
        for key in ("project_name", "project_domain_name"):
            system["auth"].pop(key)
        system["auth"]["system_scope"] = "all"
        entries = {"devstack": user, "devstack-admin": admin,
                   "devstack-system-admin": system}
        fd = os.open(self.clouds_yaml, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"clouds": entries}, f)
        return admin["auth"]["auth_url"]

    def environment(self, keystone_uri):
        services = "key,g-api,n-api,n-cpu,placement-api,q-svc,imgfac-api"
        smoke_parameters = os.path.join(self.root, "smoke.parameters.json")
        with open(os.path.join(REPO, "examples",
                               "test-cloud.parameters.json")) as f:
            parameters = json.load(f)
        parameters.pop("flavor")  # the plugin's own flavor is under test
        with open(smoke_parameters, "w") as f:
            json.dump(parameters, f)
        # Builds go to the workers, which take no secrets: no root password.
        smoke_template = os.path.join(self.root, "smoke.tdl")
        with open(os.path.join(REPO, "examples", "test-cloud.tdl")) as f:
            template = f.read()
        with open(smoke_template, "w") as f:
            f.write(template.replace("<rootpw>test-cloud-root</rootpw>", ""))
        env = dict(os.environ)
        env.update({
            "DEVSTACK_DIR": DEVSTACK_DIR,
            "REQUIREMENTS_DIR": REQUIREMENTS_DIR,
            "CONTRACT_DEST": self.dest,
            "CONTRACT_REPO": REPO,
            "CONTRACT_KEYSTONE_URI": keystone_uri,
            "OS_CLIENT_CONFIG_FILE": self.clouds_yaml,
            "ENABLED_SERVICES": services,
            "SERVICE_PASSWORD": secrets.token_hex(16),
            "ADMIN_PASSWORD": secrets.token_hex(16),
            "LOG_COLOR": "False",
            # local.conf for the plugin, as a user of the test cloud sets it
            "IMGFAC_NOVA_CONF_DIR": self.conf_dir,
            "IMGFAC_NOVA_CLOUDS_YAML": self.clouds_yaml,
            "IMGFAC_NOVA_FLAVOR": self.flavor,
            "IMGFAC_NOVA_FLAVOR_RAM": "1024",
            "IMGFAC_NOVA_FLAVOR_DISK": "4",
            "IMGFAC_NOVA_SECGROUP": self.secgroup,
            "IMGFAC_NOVA_NETWORK": "imgfac-net",
            "IMGFAC_NOVA_FLOATING_NETWORK": "public",
            "IMGFAC_NOVA_SERVICE_USER": self.service_user,
            "IMGFAC_NOVA_API_HOST": "127.0.0.1",
            "IMGFAC_NOVA_API_PORT": str(self.api_port),
            "IMGFAC_NOVA_SMOKE_BUILD": "True",
            "IMGFAC_NOVA_SMOKE_TEMPLATE": smoke_template,
            "IMGFAC_NOVA_WORKERS": "2",
            "IMGFAC_NOVA_ZOOKEEPER_PORT": str(self.zookeeper_port),
            "IMGFAC_NOVA_SMOKE_PARAMETERS": smoke_parameters,
            "IMGFAC_NOVA_SMOKE_CHECK": "cat /var/lib/imgfac-hello.txt",
        })
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "OS_CLOUD"):
            env.pop(name, None)
        # devstack picks python3.X from PATH: the system's, not tox's.
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return env

    def run(self, mode, env):
        log = os.path.join(self.root, "contract-%s.log" % mode)
        with open(log, "w") as out:
            proc = subprocess.run(
                ["bash", os.path.join(HERE, "contract.sh"), mode], env=env,
                stdout=out, stderr=subprocess.STDOUT, timeout=3600)
        with open(log) as f:
            self.output[mode] = f.read()
        if proc.returncode:
            pytest.fail("contract.sh %s failed (exit %d), %s:\n%s"
                        % (mode, proc.returncode, log,
                           self.output[mode][-8000:]), pytrace=False)

    def smoke(self):
        with open(os.path.join(self.logs, "imgfac-nova-smoke.txt")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)


def _make_project(result, admin_conn):
    project = admin_conn.identity.create_project(
        name=result.project, domain_id="default",
        description="imgfac-nova devstack contract test")
    user = admin_conn.identity.create_user(
        name=result.user, password=result.password, domain_id="default",
        default_project_id=project.id)
    for name in ("member", "reader"):
        admin_conn.identity.assign_project_role_to_user(
            project, user, admin_conn.identity.find_role(name))
    network = admin_conn.network.find_network("imgfac-net")
    admin_conn.network.create_rbac_policy(
        object_type="network", object_id=network.id,
        action="access_as_shared", target_project_id=project.id)
    result.project_id = project.id


def _project_conn(result):
    config = openstack.config.OpenStackConfig(
        config_files=[result.clouds_yaml], load_envvars=False)
    return openstack.connection.Connection(
        config=config.get_one(cloud="devstack"))


@pytest.fixture(scope="module")
def project_conn(stack):
    connection = _project_conn(stack)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, test_cloud, admin_conn):
    for path, what in ((DEVSTACK_DIR, "DEVSTACK_DIR"),
                       (REQUIREMENTS_DIR, "REQUIREMENTS_DIR")):
        if not os.path.isdir(path):
            pytest.fail("%s=%r is not a checkout" % (what, path),
                        pytrace=False)
    assert subprocess.run(["sudo", "true"]).returncode == 0, \
        "devstack's functions need sudo (apt-get install sudo)"
    root = str(tmp_path_factory.mktemp("devstack"))
    result = Stack(root, test_cloud)
    os.makedirs(result.dest)
    os.symlink(REPO, os.path.join(result.dest, "imgfac-nova"))
    result.project_id = None
    try:
        _make_project(result, admin_conn)
        env = result.environment(result.write_clouds_yaml())
        result.env = env
        result.run("stack", env)
        result.smoke_values = result.smoke()
        yield result
    finally:
        _stop_daemon(result)
        _remove_cloud_objects(result, admin_conn)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: The devstack services run_process starts (IMGFAC_NOVA_WORKERS=2).
UNITS = ["devstack@%s.service" % name for name in (
    "imgfac-api", "imgfac-worker-1", "imgfac-worker-2", "imgfac-zookeeper")]


def _stop_daemon(result):
    """The processes run_process started, when a phase failed before
    unstack (after test_unstack_and_clean this finds them stopped)."""
    for unit in UNITS:
        subprocess.run([os.path.join(HERE, "systemctl"), "stop", unit],
                       env=dict(os.environ, SYSTEMD_DIR=os.path.join(
                           result.dest, "systemd"), LOGDIR=result.logs))


def _remove_cloud_objects(result, admin_conn):
    """What the phases and the harness made in the shared test cloud
    (devstack would drop its databases instead)."""
    smoke = os.path.join(result.logs, "imgfac-nova-smoke.txt")
    if not result.smoke_values and os.path.exists(smoke):
        result.smoke_values = result.smoke()
    flavor = admin_conn.compute.find_flavor(result.flavor)
    if flavor:
        admin_conn.compute.delete_flavor(flavor)
    for name in (result.service_user, result.user):
        user = admin_conn.identity.find_user(name, domain_id="default")
        if user:
            admin_conn.identity.delete_user(user)
    if result.project_id is None:
        return
    project = result.project_id
    for image in admin_conn.image.images(owner=project):
        admin_conn.image.delete_image(image)
    for server in admin_conn.compute.servers(all_projects=True,
                                             project_id=project):
        admin_conn.compute.delete_server(server)
        admin_conn.compute.wait_for_delete(server)
    for fip in admin_conn.network.ips(project_id=project):
        admin_conn.network.delete_ip(fip)
    for port in admin_conn.network.ports(project_id=project):
        admin_conn.network.delete_port(port)
    for group in admin_conn.network.security_groups(project_id=project):
        admin_conn.network.delete_security_group(group)
    for policy in admin_conn.network.rbac_policies(target_project_id=project):
        admin_conn.network.delete_rbac_policy(policy)
    admin_conn.identity.delete_project(project)


def _constraint(name):
    with open(os.path.join(REQUIREMENTS_DIR, "upper-constraints.txt")) as f:
        for line in f:
            if line.lower().startswith(name + "==="):
                return line.split("===")[1].split(";")[0].strip()
    raise AssertionError("%s is not in upper-constraints" % name)


def test_installed_with_setup_develop_under_upper_constraints(stack):
    pip = os.path.join(stack.venv, "bin", "pip")
    show = subprocess.run([pip, "show", "imgfac-nova", "openstacksdk",
                           "paramiko"], capture_output=True, text=True,
                          check=True).stdout
    assert "Editable project location: %s" % os.path.join(
        stack.dest, "imgfac-nova") in show
    for name in ("openstacksdk", "paramiko"):
        assert "Name: %s\nVersion: %s\n" % (name, _constraint(name)) in show
    assert "setup_develop" in stack.output["stack"]
    assert os.access(os.path.join(stack.venv, "bin", "imgfac-nova"), os.X_OK)


def test_config_file(stack):
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(stack.conf)
    assert conf["DEFAULT"]["storage_path"] == os.path.join(stack.data,
                                                           "storage")
    assert conf["DEFAULT"]["media_cache_path"] == os.path.join(stack.data,
                                                               "media")
    assert conf["DEFAULT"]["os_plugin"] == "nova"
    assert os.stat(stack.conf).st_mode & 0o077 == 0
    assert conf["api"]["bind_port"] == str(stack.api_port)
    assert conf["api"]["auth_strategy"] == "keystone"
    auth = conf["keystone_authtoken"]
    assert auth["username"] == stack.service_user
    assert auth["project_name"] == "service"
    assert auth["auth_url"] == stack.env["CONTRACT_KEYSTONE_URI"]
    assert auth["www_authenticate_uri"] == stack.env["CONTRACT_KEYSTONE_URI"]
    assert conf["jobboard"]["backend_url"] == (
        "zookeeper://127.0.0.1:%d/imgfac-nova/jobs" % stack.zookeeper_port)
    assert conf["worker"]["max_concurrent_builds"] == "1"


def test_flavor_in_nova(stack, admin_conn):
    flavor = admin_conn.compute.find_flavor(stack.flavor)
    assert flavor is not None
    assert (flavor.ram, flavor.vcpus, flavor.disk) == (1024, 1, 4)
    assert flavor.is_public


def test_ssh_security_group(stack, project_conn):
    group = project_conn.network.find_security_group(stack.secgroup)
    assert group is not None
    rules = {(r["direction"], r["protocol"], r["port_range_min"])
             for r in group.security_group_rules}
    assert ("ingress", "tcp", 22) in rules
    assert ("ingress", "icmp", None) in rules


def test_build_parameters_of_this_cloud(stack):
    with open(os.path.join(stack.conf_dir, "devstack.parameters.json")) as f:
        parameters = json.load(f)
    assert parameters == {
        "flavor": stack.flavor, "network": "imgfac-net",
        "security_groups": stack.secgroup, "request_floating_ip": True,
        "floating_ip_network": "public"}


def test_smoke_build_booted_and_checked(stack, project_conn):
    conn = project_conn
    smoke = stack.smoke_values
    print("smoke build: %s s, boot check: %s s"
          % (smoke["build_seconds"], smoke["boot_check_seconds"]))
    assert smoke["status"] == "COMPLETE"
    image = conn.image.get_image(smoke["glance_image"])
    assert image.status == "active"
    # the build's own log (the store's <uuid>.log), kept for Zuul
    with open(os.path.join(stack.data, "smoke-result.json")) as f:
        record = json.load(f)
    assert record["worker"].startswith("jobboard:"), record["worker"]
    with open(record["log"]) as f:
        build_log = f.read()
    with open(os.path.join(stack.logs, "imgfac-nova-smoke-build.log")) as f:
        assert f.read() == build_log
    assert "Capturing the image" in build_log
    with open(os.path.join(stack.logs, "imgfac-nova-smoke-check.txt")) as f:
        assert "Hello, world!" in f.read()
    # the check server and what was made for it are gone
    assert conn.compute.find_server("imgfac-nova-smoke-check") is None
    assert conn.compute.find_keypair("imgfac-nova-smoke-check") is None
    with open(os.path.join(stack.data, "smoke-floating-ip")) as f:
        address = f.read().strip()
    assert not list(conn.network.ips(floating_ip_address=address))


def test_service_user_in_keystone(stack, admin_conn):
    user = admin_conn.identity.find_user(stack.service_user,
                                         domain_id="default")
    assert user is not None
    project = admin_conn.identity.find_project("service",
                                               domain_id="default")
    role = admin_conn.identity.find_role("service")
    assert admin_conn.identity.validate_user_has_project_role(
        project, user, role)


def _authtoken(stack):
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(stack.conf)
    return conf["keystone_authtoken"]


def _token(auth_url, username, password, project):
    plugin = v3.Password(auth_url=auth_url, username=username,
                         password=password, project_name=project,
                         user_domain_name="Default",
                         project_domain_name="Default")
    return ks_session.Session(auth=plugin).get_token()


@pytest.fixture(scope="module")
def tokens(stack, test_cloud):
    """Tokens from the test cloud's Keystone: of the service user (from
    [keystone_authtoken]), of the building project's user, of admin."""
    auth = _authtoken(stack)
    with open(test_cloud.clouds_yaml) as f:
        admin = yaml.safe_load(f)["clouds"]["imgfac-test-admin"]["auth"]
    url = stack.env["CONTRACT_KEYSTONE_URI"]
    return {
        "service": _token(auth["auth_url"], auth["username"],
                          auth["password"], auth["project_name"]),
        "user": _token(url, stack.user, stack.password, stack.project),
        "admin": _token(url, admin["username"], admin["password"],
                        admin["project_name"])}


def test_authtoken_credentials_validate_a_users_token(stack, tokens):
    """What auth_token does with [keystone_authtoken]: the service user's
    token validates a caller's token at Keystone."""
    url = stack.env["CONTRACT_KEYSTONE_URI"]
    answer = requests.get(url + "/auth/tokens", timeout=30, headers={
        "X-Auth-Token": tokens["service"], "X-Subject-Token": tokens["user"]})
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert token["user"]["name"] == stack.user
    assert token["project"]["id"] == stack.project_id
    bad = requests.get(url + "/auth/tokens", timeout=30, headers={
        "X-Auth-Token": tokens["service"], "X-Subject-Token": "not-a-token"})
    assert bad.status_code == 404


def test_run_process_started_the_daemon(stack):
    unit = os.path.join(stack.dest, "systemd", "devstack@imgfac-api.service")
    unit_conf = configparser.ConfigParser(interpolation=None, strict=False)
    unit_conf.read(unit)
    assert unit_conf["Service"]["ExecStart"] == (
        "%s/bin/imgfac-nova-api --config-file %s" % (stack.venv, stack.conf))
    with open(os.path.join(stack.dest, "systemd", ".shim",
                           "devstack@imgfac-api.service.pid")) as f:
        os.kill(int(f.read()), 0)  # running
    with open(_daemon_log(stack)) as f:
        log = f.read()
    assert "listening on http://127.0.0.1:%d (auth_strategy keystone" % (
        stack.api_port) in log
    assert "Traceback" not in log


def _running(stack, unit):
    with open(os.path.join(stack.dest, "systemd", ".shim",
                           unit + ".pid")) as f:
        os.kill(int(f.read()), 0)
    with open(os.path.join(stack.logs, unit + ".log")) as f:
        return f.read()


def test_zookeeper_and_the_workers_run_as_devstack_services(stack):
    units = os.path.join(stack.dest, "systemd")
    zookeeper = configparser.ConfigParser(interpolation=None, strict=False)
    zookeeper.read(os.path.join(units, UNITS[3]))
    assert zookeeper["Service"]["ExecStart"].startswith("/usr/bin/java ")
    with socket.create_connection(("127.0.0.1", stack.zookeeper_port),
                                  5) as sock:
        sock.sendall(b"ruok")
        assert sock.recv(16) == b"imok"
    for unit in UNITS[1:3]:
        worker = configparser.ConfigParser(interpolation=None, strict=False)
        worker.read(os.path.join(units, unit))
        assert worker["Service"]["ExecStart"] == (
            "%s/bin/imgfac-nova-worker --config-file %s"
            % (stack.venv, stack.conf))
        log = _running(stack, unit)
        assert "takes builds from zookeeper://127.0.0.1:%d" % (
            stack.zookeeper_port) in log
        assert "Traceback" not in log


def _daemon_log(stack):
    return os.path.join(stack.logs, "devstack@imgfac-api.service.log")


def _api(stack, path, token=None):
    headers = {"X-Auth-Token": token} if token else {}
    return requests.get("http://127.0.0.1:%d/imagefactory%s"
                        % (stack.api_port, path), headers=headers,
                        timeout=60)


def test_daemon_answers_its_v2_api_with_keystone_tokens(stack, tokens):
    for token in (None, "not-a-token"):
        answer = _api(stack, "", token)
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"] == "Keystone uri=\"%s\"" % (
            stack.env["CONTRACT_KEYSTONE_URI"])
    answer = _api(stack, "", tokens["user"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["api_version"] == "2.0"
    plugins = {p["id"] for p in _api(stack, "/plugins", tokens["user"])
               .json()["plugins"]}
    assert {"nova", "openstack"} <= plugins
    # The CLI's smoke build is in the daemon's store (the same
    # storage_path); a CLI record belongs to no project, so admin sees it
    # and the project's user is told it does not exist.
    smoke = stack.smoke_values
    answer = _api(stack, "/base_images/" + smoke["image_id"], tokens["admin"])
    assert answer.status_code == 200, answer.text
    image = answer.json()["base_image"]
    assert image["status"] == "COMPLETE"
    assert image["properties"]["x-image-properties-glance_id"] == \
        smoke["glance_image"]
    assert _api(stack, "/base_images/" + smoke["image_id"],
                tokens["user"]).status_code == 404
    # its build log, which a worker wrote, from the database
    answer = _api(stack, "/base_images/%s/build_log" % smoke["image_id"],
                  tokens["admin"])
    assert answer.status_code == 200, answer.text
    assert "Capturing the image" in answer.text
    with open(_daemon_log(stack)) as f:
        assert "Traceback" not in f.read()


def test_unstack_and_clean(stack):
    """Last: unstack stops the daemon, clean removes config and data."""
    stack.run("unstack", stack.env)
    for unit in UNITS:
        for kind in ("pid", "enabled"):
            assert not os.path.exists(os.path.join(
                stack.dest, "systemd", ".shim", "%s.%s" % (unit, kind)))
    stack.run("clean", stack.env)
    assert not os.path.exists(stack.conf_dir)
    assert not os.path.exists(stack.data)
    assert not os.path.exists(os.path.join(stack.logs,
                                           "imgfac-nova-smoke.txt"))

"""Running imgfac-nova builds in functional tests, and looking at what they left."""
import json
import os
import signal
import subprocess
import sys
import uuid

from tests import poll
from tests.functional import databases

from novaimagebuilder import cloud

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

#: The test installer's tree and the local package repository, as the test
#: cloud serves them (see tools/testcloud/guests.py).
INSTALL_URL = "http://127.0.0.1:8090/installer/"
GUEST_REPO_URL = "http://10.0.2.2:8090/repo/"

TEMPLATE = """<template>
  <name>{name}</name>
  <description>imgfac-nova functional test image</description>
  <os>
    <name>Debian</name><version>12</version><arch>x86_64</arch>
    <install type='url'><url>{install_url}</url></install>
    <rootpw>{rootpw}</rootpw>
  </os>
  <repositories>
    <repository name='ftrepo'>
      <url>{repo_url}</url><signed>no</signed><persisted>no</persisted>
    </repository>
  </repositories>
  <packages><package name='hello'/></packages>
  <files>
    <file name='/etc/imgfac-ft.txt' type='raw'>made by imgfac-nova</file>
  </files>
  <commands>
    <command name='mark'>{command}</command>
  </commands>
</template>
"""

GOOD_COMMAND = "echo customized > /var/lib/imgfac-ft-mark"
#: The template's root password: this session's own, so the JEOS cache keys
#: of its builds are its own too (the key covers the <os> section), and
#: concurrent or earlier sessions on the test cloud neither hit nor lose them.
ROOT_PASSWORD = "ft-root-secret-" + uuid.uuid4().hex[:12]


def write_template(directory, command=GOOD_COMMAND, install_url=INSTALL_URL):
    path = os.path.join(str(directory), "ft.tdl")
    with open(path, "w") as handle:
        handle.write(TEMPLATE.format(name="ft-" + uuid.uuid4().hex[:6],
                                     install_url=install_url,
                                     rootpw=ROOT_PASSWORD,
                                     repo_url=GUEST_REPO_URL,
                                     command=command))
    return path


#: Parameters of the test builds, in the test cloud and locally.
#: (The network is named: tests beside the builds make networks of their
#: own in the project, and a build refuses to guess between several.)
NOVA_PARAMS = ("--parameter", "flavor", "2",
               "--parameter", "network", "imgfac-net",
               "--parameter", "default_user", "debian",
               "--parameter", "command_prefix", "sudo")
LOCAL_PARAMS = ("--parameter", "default_user", "debian",
                "--parameter", "command_prefix", "sudo",
                "--parameter", "disk_size", "2")

#: An install script for the test installer (tools/testcloud/guests.py).
INSTALL_SCRIPT = "# install the test guest, then power off\npoweroff\n"


def write_script(directory, text=INSTALL_SCRIPT):
    path = os.path.join(str(directory), "install.ks")
    with open(path, "w") as handle:
        handle.write(text)
    return path


def with_install_script(params, directory):
    """``params`` plus the test installer's install script."""
    return tuple(params) + ("--file-parameter", "install_script",
                            write_script(directory))


#: The local JEOS cache of this test session (set by conftest): builds of
#: the same template and parameters share it, and only they.
JEOS_CACHE_DIR = None


def write_config(directory):
    store = os.path.join(str(directory), "store")
    path = os.path.join(str(directory), "imgfac-nova.conf")
    with open(path, "w") as handle:
        handle.write("[DEFAULT]\nstorage_path = %s\n" % store)
        if JEOS_CACHE_DIR:
            handle.write("jeos_cache_path = %s\n" % JEOS_CACHE_DIR)
        handle.write(databases.config_section(store))
    return path, store


#: A build that must run the installer (tests of the install steps).
FRESH_INSTALL = ("--parameter", "jeos_cache", "false")


def imgfac(config, *args, env=None, timeout=1800):
    """Run the imgfac-nova command; returns the CompletedProcess, with the
    ``pid`` it ran as (see made_by)."""
    argv = [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config,
            "--output", "json", *args]
    with subprocess.Popen(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env,
                          cwd=REPO) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    result.pid = proc.pid
    return result


def delete(config, image, env, conn, *args):
    """Delete the Nova-built ``image`` (a record; ``args`` go to the delete
    verb) and the JEOS cache entry its build stored: once the record is
    gone, remove_jeos_cache no longer counts that entry among the
    session's."""
    deleted = imgfac(config, "delete", image["identifier"], *args, env=env)
    assert deleted.returncode == 0, deleted.stderr
    if image["properties"].get("jeos_cache") == "stored":
        conn.image.delete_image(image["properties"]["jeos_image"],
                                ignore_missing=True)


def made_by(conn, result):
    """The cloud resources (nova_sweep.leftovers) whose owner is the process of
    ``result`` (an imgfac() run): what it made and left, whatever other
    sessions do in the cloud meanwhile."""
    import socket
    from novaimagebuilder.machines import nova_sweep
    owner = "%s:%d" % (socket.gethostname(), result.pid)
    return [(found.kind, found.name) for found in nova_sweep.leftovers(conn)
            if found.owner == owner]


def hung_install(config, directory, params, env):
    """Build with an installer told to hang; its inactivity limit is 20 s."""
    script = write_script(directory, "hang\n")
    return imgfac(config, "base_image", *params, "--file-parameter",
                  "install_script", script, "--parameter",
                  "inactivity_timeout", "20", write_template(directory),
                  env=env)


HUNG_INSTALL_ERROR = ("waiting for the installer to finish: no activity for "
                      "20 s; console ends: ")


def start(config, *args, env=None, module="imgfac_nova.cli",
          stderr=subprocess.PIPE):
    """Start the imgfac-nova command without waiting (--output json);
    ``module`` runs it through a test wrapper such as tests.functional.faults,
    ``stderr`` may be a file for a long build's log."""
    return subprocess.Popen(
        [sys.executable, "-m", module, "--config-file", config,
         "--output", "json", *args], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=stderr, text=True)


def wait_for_activity(proc, store, text, timeout=1500):
    """Wait until the build run by ``proc`` logs ``text``; returns its id."""
    def logged():
        logs = [n for n in os.listdir(store) if n.endswith(".log")] \
            if os.path.isdir(store) else []
        assert proc.poll() is None, proc.communicate()
        if logs:
            with open(os.path.join(store, logs[0])) as handle:
                if text in handle.read():
                    return logs[0][:-len(".log")]
        return None
    return poll.wait_for(logged, timeout, "the build to log %r" % text,
                         interval=2)


def record(result):
    """The image record a build printed (--output json)."""
    return json.loads(result.stdout)


def store_leftovers(store):
    """Anything in the store that is not its database, an image's data or
    build log (or the imported records of an older release)."""
    from imgfac_nova import store as store_mod
    from imgfac_nova.db import meta_files
    if not os.path.isdir(store):
        return []
    return [n for n in os.listdir(store)
            if not n.endswith((".body", ".log")) and n != ".lock"
            and not n.startswith(store_mod.SQLITE_NAME)
            and n not in (meta_files.IMPORTED, meta_files.DONE)]


def store_is_empty(store):
    """True when the store has no record and no file but its database."""
    from imgfac_nova import store as store_mod
    from imgfac_nova.db import meta_files
    return not os.path.isdir(store) or records(store) == {} and not [
        n for n in os.listdir(store)
        if n not in (".lock", meta_files.DONE)
        and not n.startswith(store_mod.SQLITE_NAME)]


def qemu_processes_under(path):
    from novaimagebuilder.machines import qemu
    return qemu.processes_using(path)


def records(store):
    """``{id: record as a dict}`` of the store in directory ``store``."""
    if not os.path.isdir(store):
        return {}
    return {r.identifier: r.to_dict()
            for r in databases.image_store(store).list()}


def read_record(store, identifier):
    """The stored record of ``identifier`` as a dict."""
    return databases.image_store(store).get(identifier).to_dict()


def record_text(store, identifier):
    """The stored record of ``identifier`` as JSON text (to look for
    secrets in)."""
    return json.dumps(read_record(store, identifier))


def kill_when(config, store, tmp, args, env, reached):
    """Start a build (``args`` of the command), kill -9 it once the record
    it builds satisfies ``reached(record)``; returns that record."""
    with open(tmp / "build.log", "w") as log:
        proc = start(config, *args, env=env, stderr=log)
        try:
            return wait_for_record(proc, store, reached, interval=0.1)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)


def wait_for_record(proc, store, predicate, timeout=1500, interval=0.2):
    """Poll the store until the one record ``proc`` is building satisfies
    ``predicate(record)``; returns that record."""
    def reached():
        for found in records(store).values():
            if predicate(found):
                return found
        assert proc.poll() is None, proc.communicate()
        return None
    return poll.wait_for(reached, timeout, "the awaited build state",
                         interval=interval)


def cloud_left(admin_conn, build_id, seen=()):
    """What the cloud still holds of build ``build_id``, listed as admin in
    every project: tagged servers, images, security groups, floating IPs and
    ports, the build's keypair, and the ports of the servers and groups in
    ``seen`` (leftovers listed while the build ran)."""
    tag = cloud.BUILD_TAG + "=" + build_id
    servers = {s.id for s in seen if s.kind == "server"}
    groups = {s.id for s in seen if s.kind == "security group"}
    left = [("server", s.name)
            for s in admin_conn.compute.servers(all_projects=True)
            if (s.metadata or {}).get(cloud.BUILD_TAG) == build_id
            or s.id in servers]
    left += [("image", i.name) for i in admin_conn.image.images()
             if (i.properties or {}).get(cloud.BUILD_TAG) == build_id
             and not _shared_media(i) and not _jeos_cache_entry(i)]
    left += [("security group", g.name)
             for g in admin_conn.network.security_groups()
             if tag in (g.tags or ()) or g.id in groups]
    left += [("floating IP", ip.floating_ip_address)
             for ip in admin_conn.network.ips() if tag in (ip.tags or ())]
    left += [("port", p.id) for p in admin_conn.network.ports()
             if tag in (p.tags or ()) or p.device_id in servers
             or groups & set(p.security_group_ids or ())]
    user = admin_conn.identity.find_user("imgfac")
    left += [("keypair", k.name)
             for k in admin_conn.compute.keypairs(user_id=user.id)
             if build_id in k.name]
    return left


def _shared_media(image):
    """Install media a build uploaded and left, once active, for all."""
    return (image.properties or {}).get("imgfac_role") == "media" and \
        image.status == "active"


def _jeos_cache_entry(image):
    """A JEOS the build installed and kept for later builds (active)."""
    from novaimagebuilder import sweep
    return (image.properties or {}).get("imgfac_role") == sweep.JEOS_CACHE \
        and image.status == "active"


def remove_jeos_cache(admin_conn, directory):
    """Delete the JEOS cache entries in the test cloud's Glance that builds
    recorded under ``directory`` (a session's temporary tree) stored."""
    from novaimagebuilder import sweep
    from imgfac_nova import store as store_mod
    ours = set()
    for top in databases.stores_under(directory):
        try:
            ours.update(records(top))
        except store_mod.StoreError:
            continue  # a unit test's database made unusable on purpose
    for image in list(admin_conn.image.images()):
        props = image.properties or {}
        if props.get("imgfac_role") == sweep.JEOS_CACHE and \
                props.get(cloud.BUILD_TAG) in ours:
            admin_conn.image.delete_image(image.id, ignore_missing=True)


def local_left(store, build_id):
    """What this machine still holds of build ``build_id``: its QEMU
    processes and any process using the store (qemu-img, virt-sysprep),
    work files in the store, QMP socket directories."""
    import tempfile
    from novaimagebuilder.machines import qemu
    left = [("QEMU process" if os.path.basename(argv[0]).startswith(
        "qemu-system") else "process %s" % os.path.basename(argv[0]), pid)
            for pid, argv in qemu.processes(None)
            if qemu.build_of(argv) == build_id
            or any(store in arg for arg in argv)]
    left += [("store file", name) for name in store_leftovers(store)]
    if os.path.exists(os.path.join(store, build_id + ".body")):
        left.append(("store file", build_id + ".body"))
    left += [("QMP socket directory", name)
             for name in os.listdir(tempfile.gettempdir())
             if name.startswith(qemu.QMP_PREFIX + build_id)]
    return left

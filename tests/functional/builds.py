"""Running imgfac-nova builds in functional tests, and looking at what they left."""
import json
import os
import subprocess
import sys
import uuid

from tests.functional import poll

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
    <rootpw>ft-root-secret</rootpw>
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


def write_template(directory, command=GOOD_COMMAND, install_url=INSTALL_URL):
    path = os.path.join(str(directory), "ft.tdl")
    with open(path, "w") as handle:
        handle.write(TEMPLATE.format(name="ft-" + uuid.uuid4().hex[:6],
                                     install_url=install_url,
                                     repo_url=GUEST_REPO_URL,
                                     command=command))
    return path


#: Parameters of the test builds, in the test cloud and locally.
NOVA_PARAMS = ("--parameter", "flavor", "2",
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


def write_config(directory):
    store = os.path.join(str(directory), "store")
    path = os.path.join(str(directory), "imgfac-nova.conf")
    with open(path, "w") as handle:
        handle.write("[DEFAULT]\nstorage_path = %s\n" % store)
    return path, store


def imgfac(config, *args, env=None, timeout=1800):
    """Run the imgfac-nova command; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config,
         "--output", "json", *args], capture_output=True, text=True,
        env=env, timeout=timeout, cwd=REPO)


def hung_install(config, directory, params, env):
    """Build with an installer told to hang; its inactivity limit is 40 s."""
    script = write_script(directory, "hang\n")
    return imgfac(config, "base_image", *params, "--file-parameter",
                  "install_script", script, "--parameter",
                  "inactivity_timeout", "40", write_template(directory),
                  env=env)


HUNG_INSTALL_ERROR = ("waiting for the installer to finish: no activity for "
                      "40 s; console ends: ")


def start(config, *args, env=None):
    """Start the imgfac-nova command without waiting (--output json)."""
    return subprocess.Popen(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file", config,
         "--output", "json", *args], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    """Anything in the store that is not an image record, data or log."""
    if not os.path.isdir(store):
        return []
    return [n for n in os.listdir(store)
            if not n.endswith((".meta", ".body", ".log")) and n != ".lock"]


def qemu_processes_under(path):
    from novaimagebuilder import qemu
    return qemu.processes_using(path)

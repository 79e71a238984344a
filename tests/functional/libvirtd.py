"""libvirtd for the tests of the libvirt plugin: started when it does not
answer (tools/install-deps installs it), and what it holds of a build."""
import os
import subprocess

import pytest

from tests import poll

URI = "qemu:///system"
IMAGES = "/var/lib/libvirt/images"  # the libvirt_images_path default


def virsh(*args):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="session")
def libvirtd():
    """A libvirtd answering on qemu:///system (with virtlogd, which keeps
    its QEMU logs), started when none does."""
    if virsh("version").returncode:
        for daemon in ("virtlogd", "libvirtd"):
            if subprocess.run(["pgrep", "-x", daemon]).returncode:
                subprocess.run([daemon, "-d"], check=True, timeout=60)
        poll.wait_for(lambda: virsh("version").returncode == 0, 30,
                      "libvirtd to answer", interval=0.2)


def _names(*args):
    return virsh(*args).stdout.split()


def libvirt_left(build_id):
    """What libvirt and its images directory hold of build ``build_id``."""
    left = [("domain", name) for name in _names("list", "--all", "--name")
            if name.startswith("imgfac-%s-" % build_id)]
    left += [("pool", name) for name in _names("pool-list", "--all", "--name")
             if name == "imgfac-" + build_id]
    left += [("work directory", name) for name in os.listdir(IMAGES)
             if name.startswith(".work-" + build_id)]
    return left

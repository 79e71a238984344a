"""README command 1 on a machine state like a fresh one (slow tier)."""
import os
import shutil
import subprocess

import pytest

from tests.functional import builds

#: What a fresh Debian/Ubuntu machine lacks that the quickstart needs beyond
#: QEMU (which the test machine keeps: removing it would take the test
#: cloud down with it).
REMOVED = ("debootstrap", "xorriso")


def _clone_checkout(destination):
    """A fresh clone of the checkout's committed state (pbr takes the
    version from git)."""
    subprocess.run(["git", "clone", "-q", builds.REPO, str(destination)],
                   check=True)


@pytest.mark.slow
@pytest.mark.exclusive
def test_quickstart_installs_what_it_needs_and_builds(tmp_path):
    checkout = tmp_path / "imgfac-nova"
    _clone_checkout(checkout)
    removed = subprocess.run(
        ["apt-get", "remove", "-y", "-q", *REMOVED], capture_output=True,
        text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert removed.returncode == 0, removed.stderr
    assert not any(shutil.which(tool) for tool in REMOVED)
    state = tmp_path / "state"  # absent: no test-cloud state at all
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(IMGFAC_TEST_CLOUD_DIR=str(state),
               OS_DEFAULT__STORAGE_PATH=str(tmp_path / "store"))
    result = subprocess.run([str(checkout / "tools" / "quickstart")],
                            cwd=checkout, env=env, capture_output=True,
                            text=True, timeout=2400)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Status: COMPLETE" in result.stdout.splitlines()
    # apt's and pip's chatter went to stderr; stdout has the result only.
    assert "Setting up debootstrap" in result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith(
        ("Setting up ", "Unpacking ", "Get:", "Reading ", "Selecting "))]
    assert all(shutil.which(tool) for tool in REMOVED)
    assert (state / "www" / "inputs").exists()

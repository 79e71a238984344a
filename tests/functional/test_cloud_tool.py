"""tools/test-cloud itself: an interrupted `up` is repaired by the next one,
and failures are one line."""
import glob
import os
import signal
import subprocess

from novaimagebuilder.machines import qemu
from tests import poll
from tests.functional.conftest import TOOL, run_tool

#: A distribution of the test cloud's venv that no running service imports,
#: with a console script: the test reinstalls it.
DIST, PACKAGE, SCRIPT = "python-openstackclient", "openstackclient", "openstack"


def _kill_up_inside_the_install(venv):
    """Start `up`, kill its whole process group as soon as pip has written
    the package's files (before its console script); True if the kill came
    in that window."""
    package = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")
                        )[0] + "/" + PACKAGE
    script = os.path.join(venv, "bin", SCRIPT)
    up = subprocess.Popen([TOOL, "up", "--no-guests"], start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if poll.wait_for(lambda: os.path.isdir(package) or up.poll() is not None,
                     600, "the package's directory", interval=0.001) \
            and up.poll() is None:
        os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    up.stderr.close()
    return os.path.isdir(package) and not os.path.exists(script)


def test_up_interrupted_in_the_venv_install_is_repaired(test_cloud):
    venv = os.path.join(test_cloud.state_dir, "venv")
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip"]
    for attempt in range(3):
        subprocess.run(pip + ["uninstall", "-q", "-y", DIST], check=True,
                       capture_output=True)
        if _kill_up_inside_the_install(venv):
            break
    else:
        raise AssertionError("never stopped pip between the package's files "
                             "and its console script in 3 tries")
    up = run_tool("up", "--no-guests")
    assert up.returncode == 0, up.stderr
    assert "Traceback" not in up.stderr
    # The files are there but pip never recorded them: the venv is checked,
    # found incomplete, and installed again (a stamp alone would pass it).
    assert "installing OpenStack services" in up.stderr
    version = subprocess.run([os.path.join(venv, "bin", SCRIPT), "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    status = run_tool("status")
    assert status.returncode == 0, status.stdout
    again = run_tool("up", "--no-guests")
    assert again.returncode == 0
    assert "installing" not in again.stderr and "repairing" not in again.stderr


def test_down_of_a_state_directory_never_brought_up(tmp_path):
    env = dict(os.environ, IMGFAC_TEST_CLOUD_DIR=str(tmp_path / "state"))
    down = subprocess.run([TOOL, "down"], env=env, capture_output=True,
                          text=True)
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr


def test_down_after_an_up_killed_in_its_venv_step(tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, IMGFAC_TEST_CLOUD_DIR=str(state))
    up = subprocess.Popen([TOOL, "up"], env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    python = state / "venv" / "bin" / "python"
    try:
        poll.wait_for(lambda: python.exists() or up.poll() is not None, 600,
                      "the venv's python", interval=0.01)
        assert up.poll() is None, "up ended before its venv step"
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    down = subprocess.run([TOOL, "down"], env=env, capture_output=True,
                          text=True)
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr
    again = subprocess.run([TOOL, "status"], env=env, capture_output=True,
                           text=True)
    assert "Traceback" not in again.stderr
    assert not [pid for pid, argv in qemu.processes(None)
                if any(str(state) in arg for arg in argv)]


def test_a_failing_step_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    env = dict(os.environ, IMGFAC_TEST_CLOUD_DIR=str(tmp_path / "file"))
    up = subprocess.run([TOOL, "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 1
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1, up.stderr
    assert lines[0].startswith("test-cloud: error: ")
    assert str(tmp_path / "file") in lines[0]
    assert "Traceback" not in up.stderr

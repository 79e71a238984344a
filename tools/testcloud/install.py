"""What the test cloud needs on the machine: Debian packages and the venv.

Both steps check first and only install what is missing, so a second `up`
spends milliseconds here.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

DEBIAN_PACKAGES = (
    "mariadb-server", "mariadb-client", "rabbitmq-server",
    "qemu-system-x86", "qemu-utils", "genisoimage",
    "python3-venv", "python3-dev", "build-essential",
    # for the test guest build (guests.py)
    "debootstrap", "xorriso",
    # guests reach the web server on 8090 through it (qemutest driver)
    "socat",
)

# One OpenStack release (2026.2) for every service.
VENV_REQUIREMENTS = (
    "keystone==30.*", "glance==33.*", "openstack-placement==16.*",
    "nova==34.*", "neutron==29.*", "uwsgi", "PyMySQL",
    "python-openstackclient", "openstacksdk", "setuptools", "wheel",
)

ML2_PACKAGE = os.path.join(HERE, "ml2_bindall")
NOVA_DRIVER = os.path.join(HERE, "nova_driver", "qemutest")
NOVA_DRIVER_CONF = os.path.join(HERE, "nova_driver", "nova-compute.conf")


class InstallError(RuntimeError):
    """Something the test cloud needs could not be installed."""


def run(argv, log, **kwargs):
    """Run a command, appending its output to the log file; raise on failure."""
    with open(log, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(argv)).encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode:
        raise InstallError("%s failed (exit %d); see %s"
                           % (" ".join(argv[:3]), result.returncode, log))


def missing_packages(packages=DEBIAN_PACKAGES):
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Status}\n"] + list(packages),
        capture_output=True, text=True)
    installed = {line.split()[0] for line in result.stdout.splitlines()
                 if line.endswith(" install ok installed")}
    return [p for p in packages if p not in installed]


def ensure_packages(log, say):
    missing = missing_packages()
    if not missing:
        return
    say("installing Debian packages: %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
            "-o", "DPkg::Lock::Timeout=600"] + missing
    try:
        run(argv, log, env=env)
    except InstallError:
        run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=600"],
            log, env=env)
        run(argv, log, env=env)


def _stamp(layout, name):
    return os.path.join(layout.stamps, name)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def ensure_venv(layout, log, say):
    """Create $DIR/venv with the OpenStack services (once per requirement set)."""
    stamp = _stamp(layout, "venv")
    wanted = "\n".join(VENV_REQUIREMENTS) + "\n"
    python = layout.venv_bin("python")
    if os.path.exists(python) and _read(stamp) == wanted:
        return False
    say("installing OpenStack services into %s (a minute or two)"
        % layout.venv)
    if not os.path.exists(python):
        run(["/usr/bin/python3", "-m", "venv", layout.venv], log)
    run([layout.venv_bin("pip"), "install", "-q", "--upgrade", "pip"], log)
    run([layout.venv_bin("pip"), "install", "-q"] + list(VENV_REQUIREMENTS),
        log)
    with open(stamp, "w") as f:
        f.write(wanted)
    return True


def tree_digest(path):
    """A digest of the files under path (ignoring byte-code caches)."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def ensure_ml2_driver(layout, log):
    """Install our agent-less ML2 mechanism driver; True if (re)installed."""
    stamp = _stamp(layout, "ml2-bindall")
    digest = tree_digest(ML2_PACKAGE)
    if _read(stamp) == digest:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "bindall")
        shutil.copytree(ML2_PACKAGE, src,
                        ignore=shutil.ignore_patterns("__pycache__", "build",
                                                      "*.egg-info"))
        run([layout.venv_bin("pip"), "install", "-q", "--no-deps",
             "--no-build-isolation", "--force-reinstall", src], log)
    with open(stamp, "w") as f:
        f.write(digest)
    return True


def compute_driver():
    """(compute_driver option, extra nova.conf text) for nova-compute."""
    if os.path.exists(os.path.join(NOVA_DRIVER, "__init__.py")):
        extra = _read(NOVA_DRIVER_CONF) or ""
        return "qemutest.QemuTestDriver", extra
    return "fake.FakeDriverWithoutFakeNodes", ""


def ensure_nova_driver(layout):
    """Copy the test compute driver into nova.virt; True if it changed."""
    if not os.path.exists(os.path.join(NOVA_DRIVER, "__init__.py")):
        return False
    dest = os.path.join(layout.site_packages(), "nova", "virt", "qemutest")
    if os.path.isdir(dest) and tree_digest(dest) == tree_digest(NOVA_DRIVER):
        return False
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(NOVA_DRIVER, dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return True

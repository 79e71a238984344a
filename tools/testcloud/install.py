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
    # Cinder's backend (ceph.py); QEMU's rbd block driver; the bindings
    # that Cinder's RBD driver imports (ensure_ceph_bindings)
    "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-common", "qemu-block-extra",
    "python3-rados", "python3-rbd",
)

# One OpenStack release (2026.2) for every service.
VENV_REQUIREMENTS = (
    "keystone==30.*", "glance==33.*", "openstack-placement==16.*",
    "nova==34.*", "neutron==29.*", "cinder==29.*", "uwsgi", "PyMySQL",
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


def read(path):
    """The text of a file, or None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


#: Run with the venv's python: the distributions whose install did not
#: finish (no RECORD, a recorded file or a console script missing), then,
#: after a blank line, the wanted requirements that are not installed.
_VERIFY = r"""
import importlib.metadata as md, os, re, sys
bindir = os.path.dirname(sys.executable)
broken = set()
for dist in md.distributions():
    name = dist.metadata["Name"]
    files = dist.files
    if files is None or not all(os.path.exists(f.locate()) for f in files
                                if "__pycache__" not in str(f)):
        broken.add(name)
    for ep in dist.entry_points:
        if ep.group == "console_scripts" and not os.path.exists(
                os.path.join(bindir, ep.name)):
            broken.add(name)
print("\n".join(sorted(broken)))
print()
for requirement in sys.argv[1:]:
    try:
        md.distribution(re.split(r"[=<>~!]", requirement)[0])
    except md.PackageNotFoundError:
        print(requirement)
"""


def venv_problems(layout):
    """([distributions to reinstall], [requirements missing]) of the venv, or
    None when the venv's python or pip does not work."""
    python = layout.venv_bin("python")
    if not os.path.exists(python):
        return None
    result = subprocess.run([python, "-c", "import pip"], capture_output=True)
    if result.returncode:
        return None
    result = subprocess.run([python, "-I", "-c", _VERIFY]
                            + list(VENV_REQUIREMENTS),
                            capture_output=True, text=True)
    if result.returncode:
        return None
    broken, _, missing = result.stdout.partition("\n\n")
    return broken.split(), missing.split()


def ensure_venv(layout, log, say):
    """$DIR/venv with the OpenStack services, every distribution in it
    checked (an install that was interrupted is repaired); True if it
    changed."""
    stamp = _stamp(layout, "venv")
    wanted = "\n".join(VENV_REQUIREMENTS) + "\n"
    problems = venv_problems(layout)
    if problems == ([], []) and read(stamp) == wanted:
        return False
    pip = [layout.venv_bin("python"), "-m", "pip", "install", "-q"]
    if problems is None:
        say("creating the OpenStack virtualenv %s" % layout.venv)
        shutil.rmtree(layout.venv, ignore_errors=True)
        run(["/usr/bin/python3", "-m", "venv", layout.venv], log)
        run(pip + ["--upgrade", "pip"], log)
    elif problems[0]:
        say("repairing an unfinished install in the virtualenv: %s"
            % " ".join(problems[0]))
        # Over the top of what is there: an unfinished one cannot be
        # uninstalled (no RECORD).
        run(pip + ["--no-deps", "--ignore-installed"] + problems[0], log)
    if os.path.exists(stamp):
        os.unlink(stamp)
    say("installing OpenStack services into %s (a minute or two)"
        % layout.venv)
    run(pip + list(VENV_REQUIREMENTS), log)
    problems = venv_problems(layout)
    if problems != ([], []):
        raise InstallError("the virtualenv %s is still incomplete after "
                           "installing (%s); see %s" % (
                               layout.venv, " ".join(sum(problems or [[]], [])
                                                     ) or "pip broken", log))
    with open(stamp, "w") as f:
        f.write(wanted)
    return True


#: Debian's python3-rados/python3-rbd: C extensions that PyPI does not have.
CEPH_BINDINGS = ("rados", "rbd")
DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def ensure_ceph_bindings(layout):
    """Link Debian's rados and rbd modules into the venv (only those: the
    rest of dist-packages would shadow the venv's libraries). They are
    built for the system python, which made the venv: their ABI tag must
    be the venv's. True if a link was made."""
    result = subprocess.run(
        [layout.venv_bin("python"), "-I", "-c",
         "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        capture_output=True, text=True, check=True)
    suffix = result.stdout.strip()
    changed = False
    for module in CEPH_BINDINGS:
        source = os.path.join(DIST_PACKAGES, module + suffix)
        if not os.path.exists(source):
            raise InstallError("%s is missing: the venv's python (%s) is not "
                               "the one python3-%s is built for"
                               % (source, suffix, module))
        link = os.path.join(layout.site_packages(), module + suffix)
        if os.path.islink(link) and os.readlink(link) == source:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(source, link)
        changed = True
    return changed


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
    if read(stamp) == digest:
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
        extra = read(NOVA_DRIVER_CONF) or ""
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

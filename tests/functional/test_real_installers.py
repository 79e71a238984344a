"""Debian's real network installer (d-i) driven by the preseed imgfac-nova
generates (slow tier: minutes of TCG each): netboot kernel and initrd in
local builds and in the test cloud, and a mini.iso made of them (Debian's
mini.iso is that kernel and initrd behind ISOLINUX) as an ISO install in the
test cloud. Test-cloud guests reach the machine's Debian mirror through the
test cloud's web server, which relays /debian/ to it (a cloud network's
route to a mirror).

The mirror these machines reach serves the installer's component index but
not most of its components (udebs), so d-i cannot finish here. Each test
accepts exactly two ends: COMPLETE (then the image is booted and checked
over SSH), or the stuck-installer error at "Download installer components"
for a component the test confirms, with requests to the mirror (through the
relay and directly), is missing there. Any other question on the screen
fails the test.
"""
import contextlib
import gzip
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from imgfac_nova import template as tdl
from novaimagebuilder.scripts import installscript
from tests.functional import builds
from tests.functional import guestcheck
from tests.functional.test_cloud_guests import guests

PACKAGE = "debian-installer-12-netboot-amd64"
NETBOOT = ("/usr/lib/debian-installer/images/12/amd64/text/"
           "debian-installer/amd64")
EXAMPLE = os.path.join(builds.REPO, "examples", "debian-12.tdl")
#: The machine's Debian mirror as test-cloud guests and this host reach it
#: through the test cloud's web server.
GUEST_RELAY = "http://10.0.2.2:8090/debian"
HOST_RELAY = "http://127.0.0.1:8090/debian"
#: Debian packages of the boot loader the mini.iso is made with.
ISOLINUX_PACKAGES = ("isolinux", "syslinux-common")
STUCK = ('the installer is waiting at "Download installer components: The '
         'installer failed to download a file from the mirror"')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netboot():
    """The kernel and initrd of Debian's netboot installer (installed from
    its Debian package when missing)."""
    if not os.path.exists(NETBOOT + "/initrd.gz"):
        subprocess.run(["apt-get", "install", "-y", "-q", PACKAGE], check=True,
                       capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return ("--parameter", "install_kernel", "file://%s/linux" % NETBOOT,
            "--parameter", "install_ramdisk", "file://%s/initrd.gz" % NETBOOT)


@pytest.fixture(scope="module")
def mirror():
    return guests.debian_mirror().rstrip("/")


def example_template(directory, mirror):
    """examples/debian-12.tdl with the machine's mirror in it."""
    path = os.path.join(str(directory), "debian-12.tdl")
    with open(EXAMPLE) as source, open(path, "w") as target:
        target.write(source.read().replace("http://mirror.example.org/debian",
                                           mirror))
    return path


def udeb_missing_on_mirror(mirror, name):
    """True when the mirror lists the udeb ``name`` but answers 404 for it."""
    index = "%s/dists/bookworm/main/debian-installer/binary-amd64/Packages.gz" \
        % mirror
    with urllib.request.urlopen(index, timeout=60) as reply:
        packages = gzip.decompress(reply.read()).decode()
    stanza = re.search(r"^Package: %s\n(?:.+\n)*?Filename: (\S+)"
                       % re.escape(name), packages, re.M)
    assert stanza, "the mirror's udeb index does not list %s" % name
    request = urllib.request.Request("%s/%s" % (mirror, stanza.group(1)),
                                     method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=60).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 404
    return False


def check_outcome(result, store, mirrors, boot):
    """COMPLETE and booted, or stuck where the mirror really lacks a
    component (asked of each of ``mirrors``); returns how far it got."""
    assert result.stdout, result.stderr[-3000:]
    image = builds.record(result)
    with open(os.path.join(store, image["identifier"] + ".log")) as log:
        text = log.read()
    if image["status"] == "COMPLETE":
        with boot(image) as guest:
            assert guest.run("cat /etc/motd")[1] == "Welcome to the web image\n"
        return "COMPLETE"
    error = image["status_detail"]["error"]
    assert error == STUCK, error + "\n" + text[-4000:]
    assert "[!!] Download installer components" in text
    fetched = re.findall(r"Retrieving ([a-z0-9][a-z0-9.+-]+)", text)
    assert fetched, text[-4000:]
    for mirror in mirrors:
        assert udeb_missing_on_mirror(mirror, fetched[-1]), (mirror,
                                                             fetched[-1])
    return "stopped at %s, missing on the mirror" % fetched[-1]


def test_real_d_i_locally(netboot, mirror, local_env, setup):
    config, store, tmp = setup
    started = time.monotonic()
    result = builds.imgfac(config, "base_image", *builds.LOCAL_PARAMS[:6],
                           *netboot, "--parameter", "inactivity_timeout",
                           "600", example_template(tmp, mirror), env=local_env,
                           timeout=3600)
    outcome = check_outcome(result, store, [mirror],
                            lambda image: guestcheck.booted(image["data"]))
    print("real d-i, local: %s after %.0f s"
          % (outcome, time.monotonic() - started))
    assert builds.qemu_processes_under(store) == []


def test_real_d_i_question_is_named(netboot, mirror, local_env, setup):
    """A preseed with a wrong mirror directory: d-i stops at its critical
    "Bad archive mirror" dialog, and the build says so well within the
    inactivity timeout."""
    config, store, tmp = setup
    template = tdl.load_template(example_template(tmp, mirror))
    script, _ = installscript.generate(template, {"default_user": "debian"})
    script = re.sub(r"^(d-i mirror/http/directory string ).*$",
                    r"\1/no-such-directory", script, flags=re.M)
    path = tmp / "wrong-mirror.preseed"
    path.write_text(script)
    started = time.monotonic()
    result = builds.imgfac(config, "base_image", *builds.LOCAL_PARAMS[:6],
                           *netboot, "--parameter", "inactivity_timeout",
                           "900", "--file-parameter", "install_script",
                           str(path), example_template(tmp, mirror),
                           env=local_env, timeout=3600)
    elapsed = time.monotonic() - started
    image = builds.record(result)
    assert image["status"] == "FAILED"
    error = image["status_detail"]["error"]
    assert error.startswith('the installer is waiting at "'), error
    assert "mirror" in error.lower(), error
    assert elapsed < 900
    print("wrong mirror named in %.0f s: %s" % (elapsed, error))


@pytest.fixture(scope="module")
def relay(test_cloud, mirror):
    """The test cloud's route to the mirror: it answers as the mirror does."""
    path = "/dists/bookworm/Release"
    with urllib.request.urlopen(HOST_RELAY + path, timeout=60) as reply:
        relayed = reply.read()
    with urllib.request.urlopen(mirror + path, timeout=60) as reply:
        assert relayed == reply.read()
    return HOST_RELAY


@contextlib.contextmanager
def cloud_build(config, store, cloud_env, admin_conn, template, *params):
    """Run a base_image build in the test cloud; yields (result, record,
    seconds), then deletes the image and checks that nothing the build made
    is left (its JEOS cache entry aside)."""
    started = time.monotonic()
    result = builds.imgfac(config, "base_image", *builds.NOVA_PARAMS,
                           "--parameter", "inactivity_timeout", "600",
                           *params, template, env=cloud_env, timeout=3600)
    seconds = time.monotonic() - started
    assert result.stdout, result.stderr[-3000:]
    image = builds.record(result)
    try:
        yield result, image, seconds
    finally:
        builds.imgfac(config, "delete", image["identifier"], env=cloud_env)
    assert builds.cloud_left(admin_conn, image["identifier"]) == []


def booted_in_cloud(conn):
    def boot(image):
        return guestcheck.booted_in_cloud(
            conn, image["properties"]["x-image-properties-glance_id"])
    return boot


def test_real_d_i_in_the_cloud(netboot, mirror, relay, cloud_env, setup,
                               conn, admin_conn):
    """Netboot d-i as a Nova build: a private ramdisk with the preseed, the
    mirror through the relay."""
    config, store, tmp = setup
    with cloud_build(config, store, cloud_env, admin_conn,
                     example_template(tmp, GUEST_RELAY),
                     *netboot) as (result, image, seconds):
        outcome = check_outcome(result, store, [relay, mirror],
                                booted_in_cloud(conn))
    print("real d-i, test cloud: %s after %.0f s %s"
          % (outcome, seconds, image.get("timings")))


@pytest.fixture(scope="module")
def mini_iso(netboot, tmp_path_factory):
    """A bootable ISO of the netboot kernel and initrd, laid out as Debian's
    mini.iso: ISOLINUX at the root with the package's boot menu (which waits
    for a key for ever), the package's GRUB menu beside it. A build boots a
    private copy with the preseed, so nothing of it stays in Glance."""
    if not os.path.exists("/usr/lib/ISOLINUX/isolinux.bin"):
        subprocess.run(["apt-get", "install", "-y", "-q",
                        *ISOLINUX_PACKAGES], check=True, capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    work = tmp_path_factory.mktemp("mini-iso")
    tree = work / "tree"
    amd64 = tree / "debian-installer" / "amd64"
    shutil.copytree(NETBOOT, amd64, ignore=shutil.ignore_patterns(
        "pxelinux.*", "*.efi", "grub"))
    shutil.copy("/usr/lib/ISOLINUX/isolinux.bin", tree)
    shutil.copy("/usr/lib/syslinux/modules/bios/ldlinux.c32", tree)
    shutil.copy(NETBOOT + "/boot-screens/syslinux.cfg", tree / "isolinux.cfg")
    (tree / "boot").mkdir()
    shutil.copytree(NETBOOT + "/grub", tree / "boot" / "grub")
    iso = work / "mini.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-V",
         "ISOIMAGE", "-J", "-R", "-isohybrid-mbr",
         "/usr/lib/ISOLINUX/isohdpfx.bin", "-b", "isolinux.bin", "-c",
         "boot.cat", "-no-emul-boot", "-boot-load-size", "4",
         "-boot-info-table", str(tree)], check=True, capture_output=True)
    return str(iso)


def iso_template(directory, mirror, iso):
    """examples/debian-12.tdl as an ISO install of ``iso``, and (for the
    preseed, which an ISO template cannot say) the install script a URL
    build from ``mirror`` would use."""
    url_template = example_template(directory, mirror)
    script, _ = installscript.generate(tdl.load_template(url_template),
                                       {"default_user": "debian"})
    preseed = os.path.join(str(directory), "mini-iso.preseed")
    with open(preseed, "w") as handle:
        handle.write(script)
    with open(url_template) as handle:
        text = handle.read()
    text = re.sub(r'<install type="url">.*?</install>',
                  "<install type='iso'><iso>file://%s</iso></install>" % iso,
                  text, flags=re.S)
    path = os.path.join(str(directory), "debian-12-mini-iso.tdl")
    with open(path, "w") as handle:
        handle.write(text)
    return path, preseed


def test_real_d_i_mini_iso_in_the_cloud(mini_iso, mirror, relay, cloud_env,
                                        setup, conn, admin_conn):
    """The mini.iso as an ISO install: the server is rescued with a private
    remastered copy that boots d-i at once with the preseed in its initrd."""
    config, store, tmp = setup
    template, preseed = iso_template(tmp, GUEST_RELAY, mini_iso)
    with cloud_build(config, store, cloud_env, admin_conn, template,
                     "--file-parameter", "install_script",
                     preseed) as (result, image, seconds):
        with open(os.path.join(store, image["identifier"] + ".log")) as log:
            text = log.read()
        assert "its initrd holds the install script" in text
        assert "Rescuing server imgfac-nova-%s-installer" \
            % image["identifier"] in text
        outcome = check_outcome(result, store, [relay, mirror],
                                booted_in_cloud(conn))
    print("real d-i mini.iso, test cloud: %s after %.0f s %s"
          % (outcome, seconds, image.get("timings")))


def test_real_d_i_mini_iso_locally(mini_iso, mirror, local_env, setup):
    """The mini.iso as a local ISO install: the remastered copy boots from
    the VM's CD-ROM with the preseed in its initrd."""
    config, store, tmp = setup
    template, preseed = iso_template(tmp, mirror, mini_iso)
    started = time.monotonic()
    result = builds.imgfac(config, "base_image", *builds.LOCAL_PARAMS[:6],
                           "--parameter", "inactivity_timeout", "600",
                           "--file-parameter", "install_script", preseed,
                           template, env=local_env, timeout=3600)
    outcome = check_outcome(result, store, [mirror],
                            lambda image: guestcheck.booted(image["data"]))
    print("real d-i mini.iso, local: %s after %.0f s"
          % (outcome, time.monotonic() - started))
    assert builds.qemu_processes_under(store) == []

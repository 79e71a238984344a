"""Debian's real network installer (d-i) driven by the preseed imgfac-nova
generates, in local builds (slow tier: minutes of TCG each). (The test
cloud's guests reach only its own web server, not a Debian mirror.)

The mirror these machines reach serves the installer's component index but
not most of its components (udebs), so d-i cannot finish here. Each test
accepts exactly two ends: COMPLETE (then the image is checked over SSH), or
the stuck-installer error at "Download installer components" for a
component the test confirms, with a request to the mirror, is missing there.
Any other question on the screen fails the test.
"""
import gzip
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from imgfac_nova import template as tdl
from novaimagebuilder import installscript
from tests.functional import builds
from tests.functional import guestcheck
from tests.functional.test_cloud_guests import guests

PACKAGE = "debian-installer-12-netboot-amd64"
NETBOOT = ("/usr/lib/debian-installer/images/12/amd64/text/"
           "debian-installer/amd64")
EXAMPLE = os.path.join(builds.REPO, "examples", "debian-12.tdl")
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


def check_outcome(result, store, mirror, boot):
    """COMPLETE and booted, or stuck where the mirror really lacks a
    component; prints how far it got."""
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
    assert udeb_missing_on_mirror(mirror, fetched[-1]), fetched[-1]
    return "stopped at %s, missing on the mirror" % fetched[-1]


def test_real_d_i_locally(netboot, mirror, local_env, setup):
    config, store, tmp = setup
    started = time.monotonic()
    result = builds.imgfac(config, "base_image", *builds.LOCAL_PARAMS[:6],
                           *netboot, "--parameter", "inactivity_timeout",
                           "600", example_template(tmp, mirror), env=local_env,
                           timeout=3600)
    outcome = check_outcome(result, store, mirror,
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

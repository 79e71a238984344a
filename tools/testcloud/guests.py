#!/usr/bin/python3
"""Test guests of the imgfac-nova test cloud, built from Debian packages.

``python3 tools/testcloud/guests.py build [--dir DIR]`` (or ``build(DIR)``)
makes, under the state directory DIR (default $IMGFAC_TEST_CLOUD_DIR or
/var/lib/imgfac-nova/test-cloud):

``guests/debian-guest.qcow2``
    Bootable Debian 12 disk (2 GiB, MBR + extlinux, one ext4 partition
    labelled ``debian-root``): linux-image-cloud-amd64, openssh-server, sudo,
    jq, acpid (power button), DHCP on eth0 (ifupdown + udhcpc), no apt
    sources.  Made for QEMU TCG: its own small initramfs and sysvinit with
    one init script (guest-files/rootfs/usr/local/sbin/imgfac-sysinit)
    instead of rcS and udev; boots to SSH in ~20 s.  Debian's cloud-init is
    installed but off: ``/usr/local/sbin/imgfac-cloud-init enable`` (e.g. in
    an install script's ``%post``) makes it set up each new instance from
    the config drive instead of ``imgfac-firstboot``, as on a real cloud
    image (host keys from the user data's ``ssh_keys``, printed on the
    console only after sshd starts).  ``imgfac-firstboot``
    reads the config drive (label ``config-2``) at the first boot of each
    instance: new SSH host keys (Ed25519, ECDSA), hostname, user ``debian``
    with passwordless sudo and the ``public_keys``, ``user_data`` run once
    when it starts with ``#!``.  Host key fingerprints and keys are printed
    to the console between ``-----BEGIN SSH HOST KEY FINGERPRINTS-----`` /
    ``-----BEGIN SSH HOST KEY KEYS-----`` markers.
``www/installer/vmlinuz``, ``www/installer/initrd.img``, ``installer.iso``
    A small test OS installer (URL install tree / bootable ISO) that installs
    the guest above onto a blank disk, then powers off.  Booted with UEFI
    firmware it makes a GPT disk with a 64 MiB EFI system partition and
    installs Debian's signed shim at the removable path
    ``EFI/BOOT/BOOTX64.EFI`` with Debian's signed GRUB beside it (and the
    kernel and initramfs) instead of extlinux: it boots with Secure Boot on
    and Microsoft's keys enrolled, and with any NVRAM.  The initrd carries
    the guest root file system, so installing needs no network.
``www/repo/``
    A flat apt repository with a few small real packages (REPO_PACKAGES),
    for guests: ``deb [trusted=yes] http://10.0.2.2:8090/repo/ ./``.

The build is cached: it reruns only when the inputs (package lists,
guest-files/, this script's version) change; then it needs the Debian mirror
of the machine's apt configuration, debootstrap, qemu-system-x86_64,
qemu-img and xorriso, and takes a few minutes (one installer run under QEMU
makes the guest disk).

Install script format (read by the installer)
----------------------------------------------
Where: the kernel command line argument ``imgfac.ks=`` (or ``inst.ks=``,
``ks=``) with ``http://HOST/PATH``, ``cdrom:/PATH``, ``configdrive:/PATH``
or ``hd:LABEL=NAME:/PATH`` (all: a file on any CD-ROM or config drive, or
a file Nova injected at PATH) or ``file:/PATH`` (inside the initrd); without
it, ``/preseed.cfg`` in the initrd (where imgfac-nova adds a preseed, as
d-i reads it), else the config drive's ``openstack/latest/user_data``.

A debian-installer preseed (any ``d-i`` line) is translated: the answers
passwd/root-password(-crypted), passwd/root-login, passwd/username,
netcfg/get_hostname, partman-auto/disk, debian-installer/exit/poweroff and
/halt become the commands below, preseed/late_command runs as in d-i
(``sh``, ``/target`` mounted, ``in-target``); other answers are ignored.

One command per line; ``#`` starts a comment line; words are separated by
blanks (no quoting)::

    disk DEVICE                  target disk (default: the first /dev/vd?,
                                 /dev/sd? that is neither a config drive
                                 nor an ISO 9660 medium)
    rootpw --plaintext PASSWORD  root password (default: --lock)
    rootpw --iscrypted HASH
    rootpw --lock
    user NAME                    create NAME with passwordless sudo
    sshkey NAME KEY...           add KEY (rest of line) to NAME's
                                 authorized_keys (NAME needs a user line)
    hostname NAME
    poweroff | halt | reboot     what to do when done (default poweroff)
    %post                        shell lines run with sh -e in the
    ...                          installed system (chroot); a failure
    %end                         fails the installation
    sleep SECONDS                test hook: wait before installing
    fail MESSAGE                 test hook: fail before installing
    hang                         test hook: stop, print nothing more

Hooks run in order after the whole script is checked and before the disk is
touched.  Progress goes to the console (and ttyS0).  The installer ends with
``INSTALLATION COMPLETE`` and the chosen power action, or with
``INSTALLATION FAILED: reason`` and stays up without powering off (an
unknown command or a bad argument names the script line).
"""

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

# Part of the cache key with the lists below and guest-files/: raise it
# whenever a change here changes what the build makes.
SCRIPT_VERSION = "6"
SUITE = "bookworm"
GUEST_PACKAGES = (
    "linux-image-cloud-amd64", "sysvinit-core", "openssh-server", "sudo",
    "ifupdown", "udhcpc", "extlinux", "fdisk", "jq", "acpid",
    # Off unless an install script enables it (imgfac-cloud-init enable):
    # under TCG it adds about a minute to a boot.
    "cloud-init",
    # The installer's UEFI boot loader (Microsoft-signed shim, Debian-signed
    # GRUB: it boots with Secure Boot on) and EFI system partition; mokutil
    # says whether Secure Boot is on.
    "shim-signed", "grub-efi-amd64-signed", "mokutil", "dosfstools",
)
# Fetched for the installer and its ISO, not installed in the guest.
INSTALLER_DEBS = ("busybox-static", "isolinux", "syslinux-common")
REPO_PACKAGES = ("hello", "tree", "figlet")
INSTALLER_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "sd_mod",
    "sr_mod", "ata_piix", "isofs", "vfat", "nls_cp437",
    "nls_iso8859_1", "nls_utf8", "crc32c_generic",
)
# The guest's own initramfs: virtio disks (ext4 is built in).
GUEST_INITRD_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod",
                        "crc32c_generic")
# Guest binaries the installer needs before the target system exists.
INSTALLER_TOOLS = ("/sbin/sfdisk", "/sbin/mke2fs", "/sbin/blkid",
                   "/sbin/mkfs.fat")
GUEST_DISK_SIZE = 2 * 1024 ** 3

HERE = pathlib.Path(__file__).resolve().parent
GUEST_FILES = HERE / "guest-files"
DEFAULT_STATE_DIR = "/var/lib/imgfac-nova/test-cloud"


def log(msg):
    print(f"guests: {msg}", file=sys.stderr, flush=True)


def state_dir_default():
    return os.environ.get("IMGFAC_TEST_CLOUD_DIR", DEFAULT_STATE_DIR)


def artifacts(state_dir):
    """Paths of everything build() makes under state_dir."""
    d = pathlib.Path(state_dir)
    return {
        "guest_disk": d / "guests" / "debian-guest.qcow2",
        "installer_kernel": d / "www" / "installer" / "vmlinuz",
        "installer_initrd": d / "www" / "installer" / "initrd.img",
        "installer_iso": d / "www" / "installer" / "installer.iso",
        "repo": d / "www" / "repo",
        # The inputs digest, so a client can tell which build a web server
        # serves.
        "inputs": d / "www" / "inputs",
    }


def debian_mirror():
    """The Debian mirror URL from the machine's apt configuration."""
    files = [pathlib.Path("/etc/apt/sources.list")]
    files += sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text()
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (m.group(1).lower(), m.group(2).split())
                    for m in re.finditer(r"^([\w-]+):\s*(.*)$", stanza, re.M))
                if (fields.get("enabled", ["yes"])[0] != "no"
                        and "deb" in fields.get("types", [])
                        and SUITE in fields.get("suites", [])
                        and "main" in fields.get("components", [])):
                    return fields["uris"][0]
        elif f.suffix == ".list":
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)",
                             line)
                if m and m.group(2) == SUITE and "main" in m.group(3).split():
                    return m.group(1)
    raise RuntimeError(f"no Debian {SUITE} main source in the apt configuration")


def inputs_digest():
    """Digest of everything the artifacts are made from."""
    h = hashlib.sha256()
    h.update(json.dumps([SCRIPT_VERSION, SUITE, GUEST_PACKAGES, INSTALLER_DEBS,
                         REPO_PACKAGES, INSTALLER_MODULES, GUEST_INITRD_MODULES,
                         INSTALLER_TOOLS,
                         GUEST_DISK_SIZE]).encode())
    for f in sorted(GUEST_FILES.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(GUEST_FILES)).encode() + b"\0")
            h.update(oct(f.stat().st_mode & 0o777).encode() + b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()


def run(argv, quiet=False, **kw):
    """subprocess.run, checked; quiet: output shown only when it fails."""
    if not quiet:
        kw.setdefault("check", True)
        return subprocess.run(argv, **kw)
    done = subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kw)
    if done.returncode:
        tail = "\n".join(done.stdout.splitlines()[-20:])
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited "
                           f"{done.returncode}:\n{tail}")
    return done


def chroot(rootfs, *argv, **kw):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return run(["chroot", str(rootfs), *argv], env=env, **kw)


# --- root file system ------------------------------------------------------

@contextlib.contextmanager
def mounted_proc(rootfs):
    proc = rootfs / "proc"
    run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        yield
    finally:
        run(["umount", "-l", str(proc)], check=False)


def make_rootfs(rootfs, cache, downloads):
    """debootstrap + packages + guest-files/rootfs; extra debs to downloads."""
    mirror = debian_mirror()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {SUITE} (minbase)")
    run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE,
         str(rootfs), mirror], quiet=True)
    overlay = GUEST_FILES / "rootfs"
    shutil.copytree(overlay, rootfs, symlinks=True, dirs_exist_ok=True)
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemons while building\nexit 101\n")
    policy.chmod(0o755)
    archives = rootfs / "var/cache/apt/archives"
    for deb in debs.glob("*.deb"):
        shutil.copy2(deb, archives)
    log("installing guest packages")
    with mounted_proc(rootfs):
        chroot(rootfs, "apt-get", "update", "-q", quiet=True)
        chroot(rootfs, "apt-get", "install", "-y", "-q",
               "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold",
               *GUEST_PACKAGES, quiet=True)
        downloads.mkdir(parents=True, exist_ok=True)
        inner = pathlib.Path("/tmp/imgfac-downloads")
        (rootfs / inner.relative_to("/")).mkdir()
        chroot(rootfs, "sh", "-c",
               f"cd {inner} && apt-get download -q -o APT::Sandbox::User=root "
               + " ".join(INSTALLER_DEBS + REPO_PACKAGES), quiet=True)
        for deb in (rootfs / inner.relative_to("/")).iterdir():
            shutil.move(str(deb), downloads / deb.name)
        (rootfs / inner.relative_to("/")).rmdir()
        chroot(rootfs, "update-rc.d", "imgfac-firstboot", "defaults",
               quiet=True)
        chroot(rootfs, "/usr/local/sbin/imgfac-cloud-init", "disable",
               quiet=True)
    for deb in archives.glob("*.deb"):
        shutil.move(str(deb), debs / deb.name)
    finish_rootfs(rootfs)


def finish_rootfs(rootfs):
    """Boot loader config, no host keys/sources/docs, apt lists dropped."""
    kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))[-1].name
    conf = rootfs / "boot/extlinux/extlinux.conf"
    conf.write_text(conf.read_text().replace("@KERNEL@", kernel))
    (rootfs / "usr/sbin/policy-rc.d").unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/apt/sources.list").write_text(
        "# No default sources: the test cloud's local repository is\n"
        "# deb [trusted=yes] http://10.0.2.2:8090/repo/ ./\n")
    (rootfs / "etc/hostname").write_text("debian\n")
    (rootfs / "etc/hosts").write_text(
        "127.0.0.1 localhost\n127.0.1.1 debian\n"
        "::1 localhost ip6-localhost ip6-loopback\n")
    mtab = rootfs / "etc/mtab"
    if not mtab.is_symlink():
        mtab.unlink(missing_ok=True)
        mtab.symlink_to("../proc/self/mounts")
    resolv = rootfs / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin",
                    "var/cache/debconf/*-old", "var/log/*.log",
                    "var/log/apt/*", "usr/share/man/*", "usr/share/info/*",
                    "usr/share/locale/*"):
        for p in rootfs.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.name != "lock":
                p.unlink()
    for p in (rootfs / "usr/share/doc").rglob("*"):
        if p.is_file() and p.name != "copyright":
            p.unlink()


def kernel_version(rootfs):
    return sorted((rootfs / "usr/lib/modules").iterdir())[-1].name


# --- installer ---------------------------------------------------------------

class Cpio:
    """Writer of a 'newc' cpio archive (the initramfs format)."""

    def __init__(self, fileobj):
        self.f = fileobj
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev,
            len(name_b), 0))
        self.ino += 1
        self.f.write(hdr.encode() + name_b)
        self.f.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.f.write(data)
        self.f.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def close(self):
        self._entry("TRAILER!!!", 0)
        self.f.write(b"\0" * (-self.f.tell() % 512))


def busybox(downloads, work):
    """The static busybox binary of the busybox-static package."""
    bb = work / "busybox-static"
    if not bb.exists():
        bb.mkdir(parents=True)
        run(["dpkg-deb", "-x",
             str(next(downloads.glob("busybox-static_*.deb"))), str(bb)])
    return bb / "bin/busybox"


def module_files(rootfs, modules):
    """{initrd path: file} of modules and their dependencies, load order."""
    kver = kernel_version(rootfs)
    order = []
    for mod in modules:
        out = chroot(rootfs, "modprobe", "-S", kver, "--show-depends", mod,
                     capture_output=True, text=True).stdout
        for path in re.findall(r"^insmod (\S+)", out, re.M):
            if path not in order:
                order.append(path)
    return {p.lstrip("/"): rootfs / p.lstrip("/") for p in order}, order


def make_guest_initrd(rootfs, downloads, work):
    """The guest's own small initramfs, boot/imgfac-initrd.img."""
    files, order = module_files(rootfs, GUEST_INITRD_MODULES)
    files["bin/busybox"] = busybox(downloads, work)
    files["init"] = GUEST_FILES / "guest-initrd/init"
    texts = {"etc/modules.order": "\n".join(order) + "\n"}
    write_initrd(rootfs / "boot/imgfac-initrd.img", files, texts)
    for stock in (rootfs / "boot").glob("initrd.img-*"):
        stock.unlink()


def installer_tree(rootfs, downloads, work):
    """Files and texts of the installer's initramfs but the payload."""
    files, order = module_files(rootfs, INSTALLER_MODULES)
    files["bin/busybox"] = busybox(downloads, work)
    for tool in INSTALLER_TOOLS:
        files[tool.lstrip("/")] = rootfs / tool.lstrip("/")
        out = chroot(rootfs, "ldd", tool, capture_output=True, text=True).stdout
        for lib in re.findall(r"(/\S+) \(0x", out):
            files[lib.lstrip("/")] = rootfs / lib.lstrip("/")
    files["etc/mke2fs.conf"] = rootfs / "etc/mke2fs.conf"
    src = GUEST_FILES / "installer"
    files["init"] = src / "init"
    files["etc/imgfac/udhcpc.script"] = src / "udhcpc.script"
    files["etc/imgfac/guest.ks"] = src / "guest.ks"
    texts = {"etc/imgfac/modules.order": "\n".join(order) + "\n",
             "etc/imgfac/version": SCRIPT_VERSION + "\n"}
    return files, texts


def write_initrd(path, files, texts, payload=None):
    """gzip'd cpio of files/texts, then the payload uncompressed after it."""
    entries = {}
    for name, src in files.items():
        # usrmerge layout, as in the guest: /lib, /lib64 link into /usr
        name = re.sub(r"^(lib|lib64|sbin)/", r"usr/\1/", name)
        real = pathlib.Path(os.path.realpath(src))
        entries[name] = (real.read_bytes(), real.stat().st_mode & 0o777)
    for name, text in texts.items():
        entries[name] = (text.encode(), 0o644)
    dirs = sorted({"/".join(n.split("/")[:i]) for n in entries
                   for i in range(1, n.count("/") + 1)} | {"dev"})
    with open(path, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            cpio = Cpio(gz)
            for d in dirs:
                cpio.dir(d)
            cpio.chardev("dev/console", 5, 1)
            cpio.symlink("lib", "usr/lib")
            cpio.symlink("lib64", "usr/lib64")
            for name, (data, mode) in sorted(entries.items()):
                cpio.file(name, data, mode)
            cpio.close()
        if not payload:
            return
        out.write(b"\0" * (-out.tell() % 512))
        cpio = Cpio(out)
        cpio.dir("payload")
        cpio.file("payload/rootfs.tar.gz", payload.read_bytes())
        cpio.close()


def make_payload(rootfs, path):
    log("packing the guest root file system")
    with open(path, "wb") as out:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--one-file-system", "-C", str(rootfs),
             "-cf", "-", "."], stdout=subprocess.PIPE)
        run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=out)
        if tar.wait():
            raise RuntimeError("tar of the guest root file system failed")


def make_iso(kernel, initrd, downloads, work, iso):
    tree = work / "iso"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "install").mkdir()
    ex = work / "isolinux-debs"
    ex.mkdir()
    for name in ("isolinux", "syslinux-common"):
        run(["dpkg-deb", "-x", str(next(downloads.glob(f"{name}_*.deb"))),
             str(ex)])
    shutil.copy(ex / "usr/lib/ISOLINUX/isolinux.bin", tree / "isolinux")
    shutil.copy(GUEST_FILES / "installer/isolinux.cfg", tree / "isolinux")
    shutil.copy(ex / "usr/lib/syslinux/modules/bios/ldlinux.c32",
                tree / "isolinux")
    shutil.copy(kernel, tree / "install/vmlinuz")
    shutil.copy(initrd, tree / "install/initrd.img")
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso),
         "-V", "IMGFAC-INSTALL", "-J", "-R",
         "-isohybrid-mbr", str(ex / "usr/lib/ISOLINUX/isohdpfx.bin"),
         "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
         "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
         str(tree)], stderr=subprocess.DEVNULL)


# --- local apt repository ----------------------------------------------------

def make_repo(downloads, repo):
    """Flat apt repository (Packages, Packages.gz, Release) of REPO_PACKAGES."""
    repo.mkdir(parents=True)
    stanzas = []
    for name in REPO_PACKAGES:
        deb = next(downloads.glob(f"{name}_*.deb"))
        shutil.copy(deb, repo / deb.name)
        data = deb.read_bytes()
        control = run(["dpkg-deb", "--field", str(deb)], capture_output=True,
                      text=True).stdout.rstrip("\n")
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    sums = {"MD5Sum": hashlib.md5, "SHA256": hashlib.sha256}
    release = ["Origin: imgfac-nova test cloud", "Label: imgfac-test",
               "Suite: test", "Codename: test", "Architectures: amd64 all",
               "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S UTC",
                                        time.gmtime())]
    for field, algo in sums.items():
        release.append(f"{field}:")
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            release.append(f" {algo(data).hexdigest()} {len(data)} {name}")
    (repo / "Release").write_text("\n".join(release) + "\n")


# --- QEMU ----------------------------------------------------------------------

def qemu_command(serial_log, memory=1024, disk=None, kernel=None, initrd=None,
                 append=None, config_drive=None, cdroms=(), ssh_forward=None,
                 qmp=None):
    """qemu-system-x86_64 argv, set up like the test cloud's Nova driver.

    TCG, headless, serial console appended to serial_log; disk (qcow2) and
    config_drive (raw ISO 9660, read-only) on virtio, cdroms on IDE.
    ssh_forward: (host_ip, host_port) forwarded to the guest's port 22;
    slirp is restricted (host alias 10.0.2.1) and the guest reaches only the
    web server, as http://10.0.2.2:8090/ (through socat).  No NIC when None.
    qmp: path of a QMP socket to listen on.
    """
    argv = ["qemu-system-x86_64", "-machine", "pc", "-nodefaults",
            "-no-user-config", "-accel", "tcg", "-cpu", "max",
            "-m", str(memory), "-smp", "1", "-display", "none",
            "-no-reboot", "-chardev",
            f"file,id=serial0,append=on,path={serial_log}",
            "-serial", "chardev:serial0"]
    drives = [(disk, "qcow2", False)] if disk else []
    if config_drive:
        drives.append((config_drive, "raw", True))
    for i, (path, fmt, ro) in enumerate(drives):
        argv += ["-drive", f"file={path},if=none,id=d{i},format={fmt}"
                 + (",readonly=on" if ro else ""),
                 "-device", f"virtio-blk-pci,drive=d{i}"]
    for i, iso in enumerate(cdroms):
        argv += ["-drive", f"file={iso},if=none,id=cd{i},format=raw,"
                 "readonly=on", "-device", f"ide-cd,drive=cd{i},bootindex={i}"]
    if kernel:
        argv += ["-kernel", str(kernel), "-initrd", str(initrd),
                 "-append", append or "console=ttyS0"]
    if qmp:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    if ssh_forward:
        argv += ["-netdev",
                 "user,id=n0,restrict=on,host=10.0.2.1,"
                 f"hostfwd=tcp:{ssh_forward[0]}:{ssh_forward[1]}-:22,"
                 "guestfwd=tcp:10.0.2.2:8090-cmd:socat STDIO TCP:127.0.0.1:8090",
                 "-device", "virtio-net-pci,netdev=n0"]
    return argv


def install_guest_disk(kernel, initrd, disk, work, timeout=900):
    """Run the installer (install script guest.ks) onto a new qcow2 disk."""
    tmp = work / "guest.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp),
         str(GUEST_DISK_SIZE)])
    console = work / "install-console.log"
    argv = qemu_command(console, disk=tmp, kernel=kernel, initrd=initrd,
                        append="console=ttyS0 imgfac.ks=file:/etc/imgfac/guest.ks")
    log("installing the guest disk with the test installer (QEMU, TCG)")
    started = time.monotonic()
    try:
        run(argv, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"installer did not finish in {timeout} s; "
                           f"console: {console}") from None
    text = console.read_text(errors="replace")
    if "INSTALLATION COMPLETE" not in text:
        raise RuntimeError(f"installer failed; console: {console}\n"
                           + "\n".join(text.splitlines()[-15:]))
    log(f"installed in {time.monotonic() - started:.0f} s")
    run(["qemu-img", "convert", "-O", "qcow2", str(tmp), str(disk)])


# --- build -----------------------------------------------------------------------

def build(state_dir=None):
    """Make (or reuse) the test guest artifacts; returns their paths."""
    state = pathlib.Path(state_dir or state_dir_default())
    paths = artifacts(state)
    guests = state / "guests"
    guests.mkdir(parents=True, exist_ok=True)
    stamp = guests / "build-stamp.json"
    digest = inputs_digest()
    with open(guests / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = {k: v for k, v in paths.items() if k != "inputs"}
        if (stamp.exists() and json.loads(stamp.read_text()).get("inputs") == digest
                and all(p.exists() for p in built.values())):
            paths["inputs"].write_text(digest + "\n")
            return {k: str(v) for k, v in paths.items()}
        started = time.monotonic()
        stamp.unlink(missing_ok=True)
        for stale in guests.glob("build.*"):
            if not _mounted_under(stale):
                shutil.rmtree(stale, ignore_errors=True)
        work = pathlib.Path(tempfile.mkdtemp(prefix="build.", dir=guests))
        try:
            _build(work, guests / "cache", paths)
            paths["inputs"].write_text(digest + "\n")
        finally:
            run(["umount", "-l", str(work / "rootfs/proc")], check=False,
                stderr=subprocess.DEVNULL)
            if not (os.environ.get("IMGFAC_GUESTS_KEEP_WORK")
                    or _mounted_under(work)):
                shutil.rmtree(work, ignore_errors=True)
        sizes = {k: _size(v) for k, v in paths.items()}
        stamp.write_text(json.dumps(
            {"inputs": digest, "seconds": round(time.monotonic() - started),
             "sizes": sizes}, indent=1) + "\n")
        log(f"built in {time.monotonic() - started:.0f} s: {sizes}")
        return {k: str(v) for k, v in paths.items()}


def _mounted_under(path):
    """True when some file system is still mounted below path."""
    prefix = str(path) + "/"
    with open("/proc/mounts") as mounts:
        return any(line.split()[1].startswith(prefix) for line in mounts)


def _size(path):
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _build(work, cache, paths):
    rootfs = work / "rootfs"
    downloads = work / "downloads"
    make_rootfs(rootfs, cache, downloads)
    make_guest_initrd(rootfs, downloads, work)
    payload = work / "rootfs.tar.gz"
    make_payload(rootfs, payload)
    files, texts = installer_tree(rootfs, downloads, work)
    payload_mb = int(subprocess.run(
        ["du", "-sm", "--apparent-size", str(rootfs)], capture_output=True,
        text=True, check=True).stdout.split()[0])
    texts["etc/imgfac/min-disk-mb"] = f"{payload_mb * 3 // 2 + 64}\n"
    out = work / "out"
    out.mkdir()
    kernel = out / "vmlinuz"
    initrd = out / "initrd.img"
    shutil.copy(rootfs / "boot" / f"vmlinuz-{kernel_version(rootfs)}", kernel)
    log("writing the installer initrd")
    write_initrd(initrd, files, texts, payload)
    payload.unlink()
    make_iso(kernel, initrd, downloads, work, out / "installer.iso")
    repo = work / "repo"
    make_repo(downloads, repo)
    install_guest_disk(kernel, initrd, out / "debian-guest.qcow2", work)
    for key, name in (("installer_kernel", "vmlinuz"),
                      ("installer_initrd", "initrd.img"),
                      ("installer_iso", "installer.iso"),
                      ("guest_disk", "debian-guest.qcow2")):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        os.replace(out / name, paths[key])
    paths["repo"].parent.mkdir(parents=True, exist_ok=True)
    old = work / "old-repo"
    if paths["repo"].exists():
        os.rename(paths["repo"], old)
    os.rename(repo, paths["repo"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or reuse) the test guests")
    b.add_argument("--dir", default=state_dir_default(),
                   help="state directory (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = build(args.dir)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"guests: build failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Removing a disk image's machine identity: offline with libguestfs'
virt-sysprep, or in the guest itself as the last thing before it powers off.

virt-sysprep works on the disk offline, in its own small appliance VM, so
the guest OS never boots for it: nothing of the clean-up (a new machine-id,
boot logs, a shell history) can end up in the image, and it knows the
distributions' own places for each piece of identity. It runs with the
``direct`` libguestfs backend (no libvirt daemon needed); KVM is used when
it works (:func:`novaimagebuilder.machines.qemu.choose_accelerator`), else TCG.

An image that stays in the cloud (its bytes never come down to run
virt-sysprep on) is cleaned in the guest instead: :func:`guest_script`
removes the same pieces of identity as :data:`OPERATIONS`, as one shell
script run as root at the end of the target's customization boot, right
before the power-off. The running system keeps what it already has open
(sshd its host keys, the loggers their deleted files), so nothing comes
back before the guest is off.
"""
import os
import shlex
import shutil
import subprocess
import tempfile

from novaimagebuilder import errors
from novaimagebuilder.machines import qemu
from novaimagebuilder import waiter

#: virt-sysprep operations: machine-id, SSH host keys, persistent net rules
#: and MAC addresses, logs, shell history, DHCP leases, temporary files.
OPERATIONS = ("machine-id", "ssh-hostkeys", "ssh-userdir",
              "udev-persistent-net", "net-hwaddr", "logfiles",
              "bash-history", "dhcp-client-state", "tmp-files", "utmp",
              "package-manager-cache", "customize")
#: cloud-init's per-instance state (virt-sysprep has no operation for it).
CLOUD_INIT_STATE = ("/var/lib/cloud/instances", "/var/lib/cloud/instance",
                    "/var/lib/cloud/data", "/var/lib/cloud/sem",
                    "/var/log/cloud-init.log", "/var/log/cloud-init-output.log")


#: What :func:`guest_script` removes for each virt-sysprep operation: shell
#: lines, paths relative to the root (``$r``). Globs that match nothing stay
#: as they are and remove nothing.
GUEST_STEPS = {
    "machine-id": (
        # Emptied, not removed: an empty machine-id is systemd's first boot.
        'if [ -f "$r/etc/machine-id" ]; then : > "$r/etc/machine-id"; fi',
        'rm -f "$r/var/lib/dbus/machine-id"'),
    "ssh-hostkeys": ('rm -f "$r"/etc/ssh/ssh_host_*',),
    "ssh-userdir": ('rm -rf "$r/root/.ssh" "$r"/home/*/.ssh',),
    "udev-persistent-net": (
        'rm -f "$r/etc/udev/rules.d/70-persistent-net.rules"',),
    "net-hwaddr": (
        'for f in "$r"/etc/sysconfig/network-scripts/ifcfg-* '
        '"$r"/etc/sysconfig/network/ifcfg-*; do '
        'if [ -f "$f" ]; then sed -i "/^HWADDR=/d" "$f"; fi; done',),
    "logfiles": (
        'if [ -d "$r/var/log" ]; then '
        'find "$r/var/log" -type f -exec rm -f {} +; fi',),
    "bash-history": ('rm -f "$r/root/.bash_history" "$r"/home/*/.bash_history',),
    "dhcp-client-state": (
        'rm -rf "$r"/var/lib/dhclient/* "$r"/var/lib/dhcp/* '
        '"$r"/var/lib/dhcpcd/* "$r"/var/lib/NetworkManager/*.lease',),
    "tmp-files": (
        'for d in "$r/tmp" "$r/var/tmp"; do '
        'if [ -d "$d" ]; then find "$d" -mindepth 1 -delete; fi; done',),
    "utmp": ('rm -f "$r/var/run/utmp" "$r/run/utmp"',),
    "package-manager-cache": (
        'rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin '
        '"$r"/var/cache/dnf/* "$r"/var/cache/yum/* "$r"/var/cache/zypp/*',),
    "cloud-init": tuple('rm -rf "$r%s"' % path for path in CLOUD_INIT_STATE),
}


def guest_script(root=""):
    """The shell script that removes the machine identity of the running
    system whose root is ``root`` ("" in the guest; a directory in tests)."""
    lines = ["set -e", "r=%s" % shlex.quote(root)]
    for operation in GUEST_STEPS.values():
        lines += operation
    return "\n".join(lines) + "\n"


def command(disk, disk_format, operations=OPERATIONS):
    """The virt-sysprep command line for ``disk``."""
    args = ["virt-sysprep", "--quiet", "--format", disk_format, "-a", disk,
            "--operations", ",".join(operations)]
    for path in CLOUD_INIT_STATE:
        args += ["--delete", path]
    return args


def environment():
    """virt-sysprep's environment: the direct backend, and TCG when KVM does
    not work here (libguestfs would try a /dev/kvm that hangs guests)."""
    env = dict(os.environ)
    env["LIBGUESTFS_BACKEND"] = "direct"
    if qemu.choose_accelerator()[0] == "tcg":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def run(disk, disk_format, operations=OPERATIONS, timeout=1800, cancel=None):
    """Run virt-sysprep on ``disk`` (modified in place); a failure is a
    one-line BuildError. libguestfs' temporary files go to ``<disk>.sysprep``,
    removed afterwards (and by a sweep when the build was killed)."""
    workdir = disk + ".sysprep"
    os.makedirs(workdir, exist_ok=True)
    env = dict(environment(), LIBGUESTFS_TMPDIR=workdir)
    try:
        _run(disk, disk_format, operations, timeout, cancel, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(disk, disk_format, operations, timeout, cancel, env):
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(command(disk, disk_format, operations),
                                    stdout=output, stderr=output, env=env)
        except FileNotFoundError:
            raise errors.BuildError("virt-sysprep is not installed (Debian: "
                                    "apt-get install libguestfs-tools)") \
                from None
        try:
            waiter.wait_for("waiting for virt-sysprep", proc.poll,
                            lambda code: code is not None, timeout,
                            cancel=cancel)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode:
            output.seek(0)
            lines = [line for line in output.read().decode(
                errors="replace").splitlines() if line.strip()]
            raise errors.BuildError("virt-sysprep failed: %s" % (
                lines[-1] if lines else "exit %d" % proc.returncode))

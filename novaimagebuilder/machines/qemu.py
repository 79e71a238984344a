"""Virtual machines run directly with QEMU, for local builds.

KVM is used when it really works; otherwise TCG (software emulation). Each VM
keeps its serial console log in its work directory and its QMP socket in a
short temporary directory; its SSH port is forwarded to a free port on
127.0.0.1 (and closes with the process). A build's VMs are named
``imgfac-<build id>-<role>`` (QEMU's ``-name``) and their socket directories
``imgfac-qmp-<build id>-*``, so a sweep finds them after a crash.
"""
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from novaimagebuilder import errors
from novaimagebuilder.installer import installer_screen
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
NAME_PREFIX = "imgfac-"
QMP_PREFIX = "imgfac-qmp-"


def choose_accelerator(requested="auto"):
    """``(accelerator, reason)``: "kvm" or "tcg", and why."""
    if requested == "tcg":
        return "tcg", "TCG requested"
    usable, why = _kvm_usable()
    if requested == "kvm":
        if not usable:
            raise errors.BuildError("KVM was requested but %s" % why)
        return "kvm", "KVM requested"
    return ("kvm", "KVM works") if usable else ("tcg", "TCG because " + why)


def _kvm_usable():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not available"
    if os.path.exists("/sys/module/kvm_pvm"):
        # kvm-pvm offers /dev/kvm without hardware virtualization; guest
        # kernels hang in early boot under it.
        return False, "/dev/kvm is kvm-pvm, on which guests hang"
    with open("/proc/cpuinfo") as handle:
        flags = handle.read()
    if " vmx" not in flags and " svm" not in flags:
        return False, "the CPU has no hardware virtualization (vmx/svm)"
    return True, "KVM works"


def machine_options(machine=None, nvram=None):
    """QEMU options for a machine_model.Machine (None: QEMU's default CPU,
    SeaBIOS, ``pc``); ``nvram`` is the VM's copy of its UEFI variables."""
    if machine is None:
        return ["-machine", "pc"]
    firmware = machine.firmware
    options = ["-machine", machine.machine_type
               + (",smm=on" if firmware and firmware.smm else "")]
    if machine.cpu:
        options += ["-cpu", machine.cpu]
    if firmware:
        if firmware.smm:  # Secure Boot's variables only SMM may write
            options += ["-global", "driver=cfi.pflash01,property=secure,"
                        "value=on"]
        options += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                    "file=" + firmware.code,
                    "-drive", "if=pflash,format=raw,unit=1,file=" + nvram]
    return options


def cdrom_options(cdroms, machine=None):
    """QEMU options for the CD-ROMs: IDE on a ``pc`` machine; on a ``q35``,
    whose controller is AHCI (which not every guest kernel has, Debian's
    cloud kernel among them), SCSI CD-ROMs on a virtio-scsi controller, as
    every installer's kernel has them."""
    if machine is None or machine.machine_type == "pc":
        return [arg for cdrom in cdroms for arg in (
            "-drive", "file=%s,media=cdrom,readonly=on" % cdrom)]
    options = ["-device", "virtio-scsi-pci,id=scsi0"] if cdroms else []
    for number, cdrom in enumerate(cdroms):
        options += ["-drive", "file=%s,if=none,id=cd%d,media=cdrom,"
                    "readonly=on" % (cdrom, number),
                    "-device", "scsi-cd,bus=scsi0.0,drive=cd%d" % number]
    return options


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VM:
    """One QEMU process and its files."""

    def __init__(self, workdir, name, disk, accel, memory_mb=1024, cpus=1,
                 disk_format="qcow2", cdroms=(), kernel=None, ramdisk=None,
                 cmdline=None, ssh=False, boot="c", build_id=None,
                 machine=None, nvram=None):
        self.workdir = workdir
        self.name = name
        self.console_path = os.path.join(workdir, name + ".console.log")
        tag = "%s-" % build_id if build_id else ""
        # Unix socket paths are limited to 107 bytes: keep it short.
        self._socket_dir = tempfile.mkdtemp(prefix=QMP_PREFIX + tag)
        self.qmp_path = os.path.join(self._socket_dir, "qmp")
        self.ssh_port = free_port() if ssh else None
        self.accel = accel
        self.process = None
        self._argv = [shutil.which(QEMU) or QEMU, "-name",
                      NAME_PREFIX + tag + name,
                      "-accel", accel,
                      "-m", str(memory_mb), "-smp", str(cpus),
                      "-display", "none", "-monitor", "none",
                      "-serial", "file:" + self.console_path,
                      "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                      "-no-reboot"]
        self._argv += machine_options(machine, nvram)
        self._argv += ["-drive", "file=%s,if=virtio,format=%s,cache=unsafe"
                       % (disk, disk_format)]
        self._argv += cdrom_options(cdroms, machine)
        if kernel:
            self._argv += ["-kernel", kernel, "-initrd", ramdisk,
                           "-append", cmdline or ""]
        netdev = "user,id=net0"
        if self.ssh_port:
            netdev += ",hostfwd=tcp:127.0.0.1:%d-:22" % self.ssh_port
        self._argv += ["-netdev", netdev,
                       "-device", "virtio-net-pci,netdev=net0"]
        if not kernel:
            self._argv += ["-boot", boot]  # c: disk, d: first CD-ROM

    def __str__(self):
        return "local VM %s" % self.name

    def start(self):
        if shutil.which(QEMU) is None:
            raise errors.BuildError("%s is not installed (Debian: apt-get "
                                    "install qemu-system-x86 qemu-utils)" % QEMU)
        LOG.info("Starting %s with %s", self.name, self.accel)
        self._stderr = open(os.path.join(self.workdir, self.name + ".qemu.log"),
                            "w+")
        # Its own session: a Ctrl-C meant for us does not kill it uncleanly.
        self.process = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL,
                                        stdout=self._stderr,
                                        stderr=subprocess.STDOUT,
                                        start_new_session=True)
        time.sleep(0.3)
        if self.process.poll() not in (None, 0):
            self._stderr.seek(0)
            text = self._stderr.read().strip().splitlines() or ["no output"]
            self.kill()
            raise errors.BuildError("QEMU did not start: %s" % text[-1])
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def console(self, lines=None):
        """The serial console so far (the last ``lines`` lines if given)."""
        try:
            with open(self.console_path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:]) if lines else text

    def _console_size(self):
        try:
            return os.path.getsize(self.console_path)
        except OSError:
            return 0

    def wait_stopped(self, what, timeout, inactivity=None, cancel=None,
                     screen=None):
        """Wait until the guest powers itself off (see Backend.
        wait_powered_off for ``screen``)."""
        screen_lines = installer_screen.CONSOLE_LINES

        def poll():
            if screen is None:
                return self._console_size()
            return screen.update(self.console(screen_lines))

        waiter.wait_for(what, poll=poll,
                        done=lambda state: not self.running(),
                        failed=lambda state: screen and screen.stuck(),
                        activity=lambda state: screen.activity if screen
                        else state, inactivity=inactivity,
                        timeout=timeout, cancel=cancel)

    def _qmp(self, command):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.qmp_path)
            stream = sock.makefile("rw")
            stream.readline()  # greeting
            for request in ({"execute": "qmp_capabilities"},
                            {"execute": command}):
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                reply = json.loads(stream.readline())
                while "event" in reply:
                    reply = json.loads(stream.readline())
                if "error" in reply:
                    raise errors.BuildError("QMP %s: %s" % (
                        request["execute"], reply["error"].get("desc")))

    def power_off(self, timeout=60):
        """ACPI power button, then kill if the guest ignores it."""
        if not self.running():
            return
        try:
            self._qmp("system_powerdown")
            self.process.wait(timeout)
        except (OSError, errors.BuildError, subprocess.TimeoutExpired,
                ValueError) as exc:
            LOG.info("%s did not power off (%s); killing it", self.name, exc)
        self.kill()

    def kill(self):
        """Stop the QEMU process for sure and remove its socket."""
        if self.process is None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        if not self._stderr.closed:
            self._stderr.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)


def processes(program="qemu-system"):
    """``(pid, argv)`` of the processes running on this host whose program
    name starts with ``program`` (QEMU's by default; every process with
    None)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0] and (program is None or
                        os.path.basename(argv[0]).startswith(program)):
            yield int(entry), argv


def processes_using(path):
    """PIDs of QEMU processes whose command line mentions ``path``."""
    return [pid for pid, argv in processes()
            if any(path in arg for arg in argv)]


def build_of(argv):
    """The build id in a QEMU command line's ``-name``, or None."""
    for option, value in zip(argv, argv[1:]):
        if option == "-name" and value.startswith(NAME_PREFIX):
            found = _BUILD_RE.match(value[len(NAME_PREFIX):])
            return found.group(0) if found else None
    return None


_BUILD_RE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")


def kill(pid):
    """Kill a process if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_left_running(program, match, what):
    """Stop the processes of ``program`` (see :func:`processes`) whose
    argv ``match`` accepts, and wait until they are gone: what an earlier
    run of a build left running when its process died (they run in
    sessions of their own). ``what`` names them in the log."""
    for pid, argv in processes(program):
        if match(argv):
            LOG.info("Stopping %s (process %d), left running by an earlier "
                     "run of this build", what, pid)
            kill(pid)
            wait_gone(pid)


def wait_gone(pid, timeout=30):
    """Wait until process ``pid`` has ended: a zombie has once its last
    thread has (until then the threads still hold its files, and QEMU's
    image locks)."""
    def state():
        try:
            with open("/proc/%d/stat" % pid) as handle:
                found = handle.read().rpartition(")")[2].split()[0]
            if found == "Z" and len(os.listdir("/proc/%d/task" % pid)) > 1:
                return "exiting"
            return found
        except (OSError, IndexError):
            return None
    waiter.wait_for("waiting for process %d to end" % pid, state,
                    lambda current: current in (None, "Z"), timeout=timeout,
                    interval=0.2, max_interval=1.0)

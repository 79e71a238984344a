"""One QEMU guest: its files under the instance directory and its process.

Everything needed to (re)start a guest is kept on disk (machine.json), so a
restarted nova-compute finds running guests again by their pid files.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from oslo_log import log as logging

from . import firmware
from . import qmp

LOG = logging.getLogger(__name__)

SPEC_FILE = 'machine.json'
#: The server's own spec while machine.json is its rescue spec.
UNRESCUE_FILE = 'unrescue.json'
RESCUE_DISKS = ('disk.rescue', 'disk.config.rescue')
CONSOLE_FILE = 'console.log'
PID_FILE = 'qemu.pid'
QEMU_LOG_FILE = 'qemu.log'
SOCKET_DIR = '/run/qemutest'
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


class MachineError(Exception):
    """QEMU failed to start or to obey."""


def command_line(binary, accel, spec, directory, qmp_socket):
    """Build the QEMU argv for a machine spec (see QemuTestDriver.spawn)."""
    argv = [binary,
            '-name', 'guest=%s' % spec['name'], '-uuid', spec['uuid'],
            '-nodefaults', '-no-user-config', '-display', 'none']
    argv += firmware.options(spec.get('machine', firmware.DEFAULT_MACHINE),
                             spec.get('firmware'),
                             os.path.join(directory, firmware.NVRAM_FILE))
    if accel == 'kvm':
        argv += ['-accel', 'kvm', '-cpu', 'host']
    else:
        argv += ['-accel', 'tcg,tb-size=256', '-cpu', 'max']
    argv += ['-smp', str(spec['vcpus']), '-m', str(spec['memory_mb']),
             '-rtc', 'base=utc',
             '-chardev', 'file,id=serial0,append=on,path=%s'
             % os.path.join(directory, CONSOLE_FILE),
             '-serial', 'chardev:serial0',
             '-qmp', 'unix:%s,server=on,wait=off' % qmp_socket,
             '-pidfile', os.path.join(directory, PID_FILE),
             '-daemonize']
    on_bus = {}
    for index, disk in enumerate(spec['disks']):
        argv += _disk_args(index, disk, on_bus)
    for index, nic in enumerate(spec['nics']):
        argv += _nic_args(index, nic, spec['host_ports'])
    if spec.get('kernel'):
        argv += ['-kernel', spec['kernel']]
        if spec.get('initrd'):
            argv += ['-initrd', spec['initrd']]
        argv += ['-append', spec.get('append') or '']
    return argv


#: QEMU devices of a disk per (bus, is a CD-ROM); "pc" has the IDE buses.
DEVICES = {
    ('virtio', False): 'virtio-blk-pci',
    ('ide', False): 'ide-hd', ('ide', True): 'ide-cd',
    ('sata', False): 'ide-hd', ('sata', True): 'ide-cd',
    ('scsi', False): 'scsi-hd', ('scsi', True): 'scsi-cd',
}
#: Controllers added once for the buses that "pc" lacks.
CONTROLLERS = {'sata': 'ich9-ahci,id=sata0', 'scsi': 'virtio-scsi-pci,id=scsi0'}
BUSES = sorted({bus for bus, _ in DEVICES})


def drive_id(index, disk):
    """The QEMU id of a disk's drive: a volume's follows its device id
    (it may be hot-plugged), the others' their place."""
    return 'drive-' + disk['id'] if disk.get('id') else 'drive%d' % index


def drive_option(index, disk):
    """The -drive value of a disk: disk['path'] is a file or, for a
    volume, QEMU's rbd:POOL/IMAGE[:OPTIONS] (volumes.py)."""
    drive = 'file=%s,if=none,id=%s,format=%s' % (
        disk['path'].replace(',', ',,'), drive_id(index, disk),
        disk['format'])
    if disk.get('readonly'):
        drive += ',readonly=on'
    else:
        drive += ',cache=writeback,discard=unmap'
    return drive


def device_option(index, disk, on_bus):
    """(controller -device values needed first, the disk's -device value);
    its bus is disk['bus'] (default: ide for a CD-ROM, virtio otherwise);
    on_bus counts the devices per bus so far (updated)."""
    cdrom = bool(disk.get('cdrom'))
    bus = disk.get('bus') or ('ide' if cdrom else 'virtio')
    controllers = []
    if bus in CONTROLLERS and bus not in on_bus:
        controllers.append(CONTROLLERS[bus])
    device = '%s,drive=%s' % (DEVICES[bus, cdrom], drive_id(index, disk))
    if bus == 'sata':  # one device per AHCI port
        device += ',bus=sata0.%d' % on_bus.get(bus, 0)
    on_bus[bus] = on_bus.get(bus, 0) + 1
    if disk.get('id'):
        device += ',id=%s' % disk['id']
    if disk.get('serial'):
        device += ',serial=%s' % disk['serial']
    if disk.get('bootindex') is not None:
        device += ',bootindex=%d' % disk['bootindex']
    return controllers, device


def _disk_args(index, disk, on_bus):
    controllers, device = device_option(index, disk, on_bus)
    argv = []
    for controller in controllers:
        argv += ['-device', controller]
    return argv + ['-drive', drive_option(index, disk), '-device', device]


def _nic_args(index, nic, host_ports):
    # restrict=on: the guest reaches nothing outside but the forwards.
    # The slirp host alias moves to 10.0.2.1 so that 10.0.2.2 can carry
    # the guest forwards to the host's loopback services.
    netdev = ('user,id=net%d,restrict=on,host=10.0.2.1,'
              'hostfwd=tcp:%s:22-:22' % (index, nic['ssh_address']))
    for port in host_ports:
        netdev += (',guestfwd=tcp:10.0.2.2:%d-cmd:socat STDIO '
                   'TCP:127.0.0.1:%d' % (int(port), int(port)))
    device = 'virtio-net-pci,netdev=net%d' % index
    if nic.get('mac'):
        device += ',mac=%s' % nic['mac']
    return ['-netdev', netdev, '-device', device]


class Machine(object):
    """The files and process of one guest, found by instance UUID."""

    def __init__(self, instances_path, uuid):
        self.uuid = uuid
        self.directory = os.path.join(instances_path, uuid)

    def path(self, name):
        return os.path.join(self.directory, name)

    @property
    def qmp_socket(self):
        path = self.path('qmp.sock')
        if len(path) <= MAX_SOCKET_PATH:
            return path
        return os.path.join(SOCKET_DIR, '%s.qmp' % self.uuid)

    def exists(self):
        return os.path.exists(self.path(SPEC_FILE))

    def save_spec(self, spec, name=SPEC_FILE):
        tmp = self.path(name + '.tmp')
        with open(tmp, 'w') as f:
            json.dump(spec, f, indent=1)
        os.replace(tmp, self.path(name))

    def load_spec(self, name=SPEC_FILE):
        with open(self.path(name)) as f:
            return json.load(f)

    def is_rescued(self):
        return os.path.exists(self.path(UNRESCUE_FILE))

    def original_spec(self):
        """The server's own spec, also while it is rescued."""
        return self.load_spec(UNRESCUE_FILE if self.is_rescued()
                              else SPEC_FILE)

    def save_rescue_spec(self, spec):
        """Run the guest as ``spec`` from now on, keeping its own spec."""
        if not self.is_rescued():
            self.save_spec(self.load_spec(), UNRESCUE_FILE)
        self.save_spec(spec)

    def restore_original_spec(self):
        """Undo save_rescue_spec and remove the rescue disks."""
        os.replace(self.path(UNRESCUE_FILE), self.path(SPEC_FILE))
        for name in RESCUE_DISKS:
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))

    def pid(self):
        """PID of this guest's live QEMU process, or None."""
        try:
            with open(self.path(PID_FILE)) as f:
                pid = int(f.read().strip())
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmdline = f.read()
        except (OSError, ValueError):
            return None
        # A zombie has an empty cmdline; a reused pid lacks our UUID.
        return pid if self.uuid.encode() in cmdline else None

    def is_running(self):
        return self.pid() is not None

    def start(self, binary, accel):
        """Start QEMU (daemonized) and return once the guest runs."""
        if self.is_running():
            return
        spec = self.load_spec()
        if self.qmp_socket.startswith(SOCKET_DIR):
            os.makedirs(SOCKET_DIR, exist_ok=True)
        for stale in (self.path(PID_FILE), self.qmp_socket):
            if os.path.exists(stale):
                os.unlink(stale)
        argv = command_line(binary, accel, spec, self.directory,
                            self.qmp_socket)
        LOG.debug('Starting QEMU: %s', ' '.join(argv))
        with open(self.path(QEMU_LOG_FILE), 'ab') as log:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True, timeout=120)
        if result.returncode != 0 or not self.is_running():
            raise MachineError('QEMU failed to start (exit %s): %s'
                               % (result.returncode, self.qemu_log_tail()))

    def qemu_log_tail(self, max_bytes=2000):
        return self._tail(QEMU_LOG_FILE, max_bytes).decode(errors='replace')

    def console_tail(self, max_bytes):
        return self._tail(CONSOLE_FILE, max_bytes)

    def _tail(self, name, max_bytes):
        try:
            with open(self.path(name), 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read()
        except FileNotFoundError:
            return b''

    def qmp(self, command, arguments=None):
        return qmp.execute(self.qmp_socket, command, arguments)

    def wait_stopped(self, timeout):
        """Wait up to timeout seconds for QEMU to exit; True if it did."""
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def powerdown(self, timeout, retry_interval):
        """Ask the guest to power off (ACPI); True if it did in time."""
        deadline = time.monotonic() + timeout
        while self.is_running():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.qmp('system_powerdown')
            except qmp.QMPError as exc:
                LOG.debug('system_powerdown: %s', exc)
            wait = min(remaining, retry_interval or remaining)
            if self.wait_stopped(wait):
                return True
        return True

    def kill(self):
        """Stop QEMU now: SIGTERM, then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if self.wait_stopped(grace):
                return
        raise MachineError('QEMU pid %d does not die' % pid)

    def remove(self):
        self.kill()
        if os.path.exists(self.qmp_socket):
            os.unlink(self.qmp_socket)
        shutil.rmtree(self.directory, ignore_errors=True)

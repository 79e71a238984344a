"""Choose the QEMU accelerator: KVM when it really runs a guest, else TCG."""

import os
import subprocess
import tempfile

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# A boot sector that writes 'K' to the serial port and then asks QEMU to
# exit through the isa-debug-exit device; QEMU's exit status becomes
# (0x10 << 1) | 1 = 33.
_PROBE_CODE = bytes([
    0xBA, 0xF8, 0x03,  # mov dx, 0x3f8
    0xB0, 0x4B,        # mov al, 'K'
    0xEE,              # out dx, al
    0xB0, 0x10,        # mov al, 0x10
    0xE6, 0xF4,        # out 0xf4, al
    0xF4,              # hlt
    0xEB, 0xFD,        # jmp hlt
])
_PROBE_EXIT_STATUS = 33


def _kvm_blocker():
    """Return why KVM is unusable without trying it, or None."""
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return '/dev/kvm is not accessible'
    if os.path.exists('/sys/module/kvm_pvm'):
        return ('/dev/kvm is kvm-pvm (no hardware virtualization); it '
                'hangs ordinary guest kernels')
    with open('/proc/cpuinfo') as cpuinfo:
        flags = cpuinfo.read().split()
    if 'vmx' not in flags and 'svm' not in flags:
        return 'the CPU has no vmx/svm flag'
    return None


def _kvm_runs_guest_code(qemu_binary):
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, 'probe.img')
        sector = _PROBE_CODE.ljust(510, b'\0') + b'\x55\xaa'
        with open(disk, 'wb') as f:
            f.write(sector)
        cmd = [qemu_binary, '-nodefaults', '-no-user-config',
               '-display', 'none', '-accel', 'kvm', '-cpu', 'host',
               '-m', '64', '-serial', 'stdio',
               '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
               '-drive', 'file=%s,format=raw,if=ide' % disk]
        try:
            result = subprocess.run(cmd, capture_output=True, timeout=20)
        except subprocess.TimeoutExpired:
            return False
        return (result.returncode == _PROBE_EXIT_STATUS and
                b'K' in result.stdout)


def choose(qemu_binary, wanted='auto'):
    """Return 'kvm' or 'tcg' (wanted is 'auto', 'kvm' or 'tcg')."""
    if wanted != 'auto':
        LOG.info('QEMU accelerator %s (configured)', wanted)
        return wanted
    reason = _kvm_blocker()
    if reason is None and not _kvm_runs_guest_code(qemu_binary):
        reason = 'a KVM probe guest did not run to completion'
    if reason:
        LOG.info('QEMU accelerator tcg: KVM unusable, %s', reason)
        return 'tcg'
    LOG.info('QEMU accelerator kvm: probe guest ran')
    return 'kvm'

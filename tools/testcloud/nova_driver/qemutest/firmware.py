"""The machine type and firmware of a guest, from its image properties, as
the libvirt driver chooses them (_configure_guest_by_virt_type):

- ``hw_machine_type`` or "pc" (Nova's x86 default); a type this QEMU does
  not know fails the boot (InvalidMachineType);
- ``hw_firmware_type=uefi``: UEFI firmware from QEMU's firmware descriptors
  (as libvirt auto-selects it), UEFINotSupported when there is none;
- ``os_secure_boot`` (image or flavor): "required" needs UEFI, a q35
  machine and firmware with Secure Boot and enrolled keys, else
  SecureBootNotSupported; "optional" turns it on only when all are there.
The host reports COMPUTE_SECURITY_UEFI_SECURE_BOOT when it has such
firmware, so the scheduler places "required" servers only here.
"""

import fnmatch
import json
import os
import re
import subprocess

from nova import exception
from nova.virt import hardware

#: QEMU's firmware descriptors; a name in an earlier directory hides the
#: same name in a later one.
DESCRIPTOR_DIRS = ('/etc/qemu/firmware', '/usr/share/qemu/firmware')
DEFAULT_MACHINE = 'pc'
NVRAM_FILE = 'nvram.fd'


def machine_types(binary):
    """{name: the versioned type it is an alias of, or itself}."""
    out = subprocess.run([binary, '-machine', 'help'], capture_output=True,
                         text=True, timeout=60).stdout
    types = {}
    for line in out.splitlines()[1:]:
        name = line.split(None, 1)[0] if line.strip() else None
        if name:
            alias = re.search(r'\(alias of ([^)\s]+)\)', line)
            types[name] = alias.group(1) if alias else name
    return types


def _descriptors(dirs):
    seen = {}
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith('.json'):
                seen.setdefault(name, os.path.join(directory, name))
    for name in sorted(seen):
        try:
            with open(seen[name]) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            yield data


def find(versioned_machine, secure, dirs=DESCRIPTOR_DIRS):
    """{'code', 'vars', 'secure', 'smm'} of the first UEFI firmware for an
    x86_64 guest of ``versioned_machine`` (with Secure Boot and enrolled
    keys when ``secure``, without Secure Boot otherwise) whose files
    exist; None when there is none."""
    for data in _descriptors(dirs):
        mapping = data.get('mapping', {})
        features = set(data.get('features', ()))
        fits = any(t.get('architecture') == 'x86_64' and any(
            fnmatch.fnmatch(versioned_machine, pattern)
            for pattern in t.get('machines', ()))
            for t in data.get('targets', ()))
        if secure:
            fits = fits and {'secure-boot', 'enrolled-keys'} <= features
        else:
            fits = fits and 'secure-boot' not in features
        code = mapping.get('executable', {}).get('filename')
        template = mapping.get('nvram-template', {}).get('filename')
        if (fits and 'uefi' in data.get('interface-types', ())
                and mapping.get('device') == 'flash' and code and template
                and os.path.exists(code) and os.path.exists(template)):
            return {'code': code, 'vars': template, 'secure': secure,
                    'smm': 'requires-smm' in features}
    return None


def supports_secure_boot(types, dirs=DESCRIPTOR_DIRS):
    """True when a q35 guest can have Secure Boot with enrolled keys."""
    return 'q35' in types and find(types['q35'], True, dirs) is not None


def choose(image_meta, flavor, types, dirs=DESCRIPTOR_DIRS):
    """{'machine': type, 'firmware': find()'s answer or None} for a guest;
    Nova's exceptions for what this host cannot give (see the module)."""
    props = image_meta.properties
    machine = props.get('hw_machine_type') or DEFAULT_MACHINE
    if machine not in types:
        raise exception.InvalidMachineType(
            message="'%s' is not valid/supported machine type, Supported "
                    "machine types are: %s" % (machine, sorted(types)))
    if props.get('hw_firmware_type') != 'uefi':
        return {'machine': machine, 'firmware': None}
    policy = hardware.get_secure_boot_constraint(flavor, image_meta)
    secure = None
    if policy in ('required', 'optional') and 'q35' in types[machine]:
        secure = find(types[machine], True, dirs)
    if policy == 'required' and secure is None:
        raise exception.SecureBootNotSupported()
    chosen = secure or find(types[machine], False, dirs)
    if chosen is None:
        raise exception.UEFINotSupported()
    return {'machine': machine, 'firmware': chosen}


def options(machine, firmware, nvram):
    """QEMU options for the machine type and firmware (None: SeaBIOS);
    ``nvram`` is the guest's own copy of the UEFI variables."""
    if firmware is None:
        return ['-machine', machine]
    argv = ['-machine', machine + (',smm=on' if firmware['smm'] else '')]
    if firmware['smm']:  # only SMM may write Secure Boot's variables
        argv += ['-global', 'driver=cfi.pflash01,property=secure,value=on']
    return argv + [
        '-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=%s'
        % firmware['code'].replace(',', ',,'),
        '-drive', 'if=pflash,format=raw,unit=1,file=%s'
        % nvram.replace(',', ',,')]

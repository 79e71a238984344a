"""Cinder volumes as QEMU drives, as Nova's libvirt driver attaches them.

For an `rbd` connection_info, libvirt (nova/virt/libvirt/volume/net.py)
writes a network disk: protocol rbd, source name data['name']
(POOL/VOLUME), the monitors of data['hosts']/data['ports'] and, when
data['auth_enabled'], the cephx user data['auth_username']; QEMU opens the
image with its own librbd client (nothing is mapped on the host). Here the
same facts become QEMU's rbd file name, rbd:POOL/VOLUME:mon_host=...:...
A volume's device carries the volume id as its serial, as libvirt's does.
"""

import time

from nova import exception
from nova.virt import block_device as virt_block_device
from nova.virt import driver
from oslo_log import log as logging

from . import machine
from . import qmp

LOG = logging.getLogger(__name__)

DETACH_TIMEOUT = 30  # seconds a guest has to release an unplugged disk


def _escape(text):
    """Escape the separators of QEMU's rbd file name (':' and '\\')."""
    return text.replace('\\', '\\\\').replace(':', '\\:')


def rbd_file(connection_info):
    """QEMU's file name of the RBD image of a Cinder connection."""
    kind = connection_info.get('driver_volume_type')
    if kind != 'rbd':
        raise exception.VolumeDriverNotFound(driver_type=kind)
    data = connection_info['data']
    options = ['rbd:' + _escape(data['name'])]
    monitors = ['[%s]:%s' % (h, p) if ':' in h else '%s:%s' % (h, p)
                for h, p in zip(data.get('hosts') or [],
                                data.get('ports') or [])]
    if monitors:
        options.append('mon_host=' + '\\;'.join(map(_escape, monitors)))
    if data.get('auth_enabled'):
        # the key comes from the host's Ceph keyring, as libvirt's secret
        options.append('id=' + _escape(data['auth_username']))
    else:
        options.append('auth_supported=none')
    return ':'.join(options)


def volume_disk(connection_info, bus=None, device_type=None):
    """The machine spec entry of a volume (see machine.command_line)."""
    volume_id = virt_block_device.get_volume_id(connection_info)
    disk = {'path': rbd_file(connection_info), 'format': 'raw',
            'volume_id': volume_id, 'id': 'volume-' + volume_id,
            'serial': volume_id}
    if device_type == 'cdrom':
        disk.update(cdrom=True, readonly=True)
    if bus:
        disk['bus'] = bus
    return disk


def root_volume(block_device_info):
    """The volume mapping with boot_index 0 (a volume-backed server's
    root), or None."""
    for bdm in driver.block_device_info_get_mapping(block_device_info):
        if bdm.get('boot_index') == 0:
            return bdm
    return None


def other_volumes(block_device_info):
    """The other volume mappings, in boot index order (unordered last)."""
    bdms = [b for b in driver.block_device_info_get_mapping(block_device_info)
            if b.get('boot_index') != 0]
    return sorted(bdms, key=lambda b: (b.get('boot_index') is None or
                                       b.get('boot_index') < 0,
                                       b.get('boot_index') or 0))


def add(m, disk):
    """Add a volume's disk to a guest's spec, hot-plugged when the guest
    runs; False if the volume is there already."""
    spec = m.load_spec()
    if any(d.get('volume_id') == disk['volume_id'] for d in spec['disks']):
        return False
    if m.is_running():
        _hotplug(m, spec, disk)
    spec['disks'].append(disk)
    m.save_spec(spec)
    return True


def remove(m, volume_id):
    """Take a volume's disk out of a guest's spec, unplugged first when the
    guest runs; False if it is not there."""
    spec = m.load_spec()
    disk = next((d for d in spec['disks'] if d.get('volume_id') == volume_id),
                None)
    if disk is None:
        return False
    if m.is_running():
        _unplug(m, disk)
    spec['disks'].remove(disk)
    m.save_spec(spec)
    return True


def refresh(m, bdms, make_disk):
    """Rewrite a stopped guest's volumes from Nova's volume mappings: each
    one's drive from its current connection_info, volumes no longer mapped
    dropped, mapped ones missing added last (make_disk(bdm): a new disk)."""
    mapped = {virt_block_device.get_volume_id(b['connection_info']): b
              for b in bdms if b.get('connection_info')}
    spec = m.load_spec()
    disks = []
    for disk in spec['disks']:
        volume_id = disk.get('volume_id')
        if volume_id is None:
            disks.append(disk)
        elif volume_id in mapped:
            disks.append(dict(disk, path=make_disk(
                mapped.pop(volume_id))['path']))
    disks.extend(map(make_disk, mapped.values()))
    if disks != spec['disks']:
        LOG.info('Volumes of %s now: %s', m.uuid, ', '.join(
            d['volume_id'] for d in disks if d.get('volume_id')) or 'none')
        spec['disks'] = disks
        m.save_spec(spec)


def _hmp(m, command_line):
    """A monitor command whose output must be empty or "OK"."""
    out = m.qmp('human-monitor-command', {'command-line': command_line})
    if (out or '').strip() not in ('', 'OK'):
        raise qmp.QMPError(out.strip())


def _hotplug(m, spec, disk):
    """Add a volume's drive and device to a running guest (as libvirt's
    live attach); spec is the guest's spec without the new disk."""
    on_bus = {}
    for index, each in enumerate(spec['disks']):
        machine.device_option(index, each, on_bus)
    index = len(spec['disks'])
    controllers, device = machine.device_option(index, disk, on_bus)
    try:
        for controller in controllers:
            _hmp(m, 'device_add ' + controller)
        _hmp(m, 'drive_add 0 ' + machine.drive_option(index, disk))
        _hmp(m, 'device_add ' + device)
    except qmp.QMPError as exc:
        raise exception.VolumeAttachFailed(volume_id=disk['volume_id'],
                                           reason=str(exc))


def _unplug(m, disk, timeout=DETACH_TIMEOUT):
    """Unplug a volume's device from a running guest and wait until the
    guest has let it go (its drive goes with it)."""
    try:
        m.qmp('device_del', {'id': disk['id']})
    except qmp.QMPError as exc:
        if 'not found' not in str(exc):
            raise exception.DeviceDetachFailed(device=disk['id'],
                                               reason=str(exc))
        LOG.info('Device %s was not in the guest', disk['id'])
        return
    deadline = time.monotonic() + timeout
    while _present(m, disk['id']):
        if time.monotonic() > deadline:
            raise exception.DeviceDetachFailed(
                device=disk['id'],
                reason='the guest did not release it in %d s' % timeout)
        time.sleep(0.3)


def _present(m, device_id):
    children = m.qmp('qom-list', {'path': '/machine/peripheral'})
    return any(child['name'] == device_id for child in children)


def connector(host, ip):
    """What Cinder is told about this host (os-brick's connector
    properties, without the iSCSI/NVMe identities nothing here uses)."""
    return {'host': host, 'ip': ip, 'platform': 'x86_64', 'os_type': 'linux',
            'multipath': False, 'enforce_multipath': False,
            'do_local_attach': False}

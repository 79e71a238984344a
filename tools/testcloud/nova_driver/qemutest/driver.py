"""QemuTestDriver: a Nova compute driver running each server as a real
QEMU guest with user-mode networking, for the imgfac-nova test cloud."""

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

import os_resource_classes as orc
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import versionutils

from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.objects import fields as obj_fields
from nova.virt import block_device as virt_block_device
from nova.virt import configdrive
from nova.virt import driver
from nova.virt import event as virtevent
from nova.virt import hardware
import nova.virt.node

from . import accel
from . import addresses
from . import conf
from . import firmware
from . import machine
from . import storage
from . import volumes

CONF = conf.CONF
LOG = logging.getLogger(__name__)

GiB = storage.GiB
CONSOLE_TAIL_BYTES = 100 * 1024
DEFAULT_KERNEL_ARGS = 'root=/dev/vda console=ttyS0'
WATCH_INTERVAL = 1.0


class QemuTestDriver(driver.ComputeDriver):
    """Each Nova server is one daemonized QEMU process.

    Files of a server live in <instances_path>/<uuid>/ (machine.json,
    disk, disk.config, console.log, qemu.pid); Glance images are cached in
    <instances_path>/_base/. A watcher thread reports guests that power
    themselves off to Nova as lifecycle events.
    """

    capabilities = dict(
        driver.ComputeDriver.capabilities,
        has_imagecache=True,
        supports_image_type_qcow2=True,
        supports_image_type_raw=True,
        supports_image_type_iso=True,
        supports_image_type_aki=True,
        supports_image_type_ari=True,
        supports_image_type_ami=True,
        # Stable device rescue keeps a root volume attached (reported as
        # the COMPUTE_RESCUE_BFV trait), as the libvirt driver.
        supports_bfv_rescue=True,
    )

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        self._image_api = glance.API()
        self._cache = storage.ImageCache(
            os.path.join(CONF.instances_path, '_base'))
        self._accel = 'tcg'
        self._hypervisor_version = 0
        self._machine_types = {}
        self._lock = threading.Lock()
        self._busy = set()
        self._running = {}
        self._stop_watching = threading.Event()
        self._watcher = None

    # -- host --------------------------------------------------------

    def init_host(self, host):
        os.makedirs(CONF.instances_path, exist_ok=True)
        binary = CONF.qemutest.qemu_binary
        self._accel = accel.choose(binary, CONF.qemutest.accel)
        self._hypervisor_version = _qemu_version(binary)
        self._machine_types = firmware.machine_types(binary)
        # Reported as the COMPUTE_SECURITY_UEFI_SECURE_BOOT trait.
        self.capabilities = dict(
            self.capabilities, supports_secure_boot=firmware.
            supports_secure_boot(self._machine_types))
        if CONF.qemutest.host_ports and not shutil.which('socat'):
            LOG.error('socat is missing: guests cannot reach host ports %s',
                      CONF.qemutest.host_ports)
        for uuid in self.list_instance_uuids():
            running = self._machine(uuid).is_running()
            self._running[uuid] = running
            LOG.info('Found guest %s (%s)', uuid,
                     'running' if running else 'stopped')
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name='qemutest-watcher')
        self._watcher.start()

    def cleanup_host(self, host):
        self._stop_watching.set()

    def get_available_nodes(self, refresh=False):
        return [CONF.host]

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_host_uptime(self):
        return subprocess.run(['uptime'], capture_output=True,
                              text=True).stdout.strip()

    def get_available_resource(self, nodename):
        opts = CONF.qemutest
        return {
            'vcpus': opts.vcpus,
            'memory_mb': opts.memory_mb,
            'local_gb': opts.disk_gb,
            'vcpus_used': 0,
            'memory_mb_used': 0,
            'local_gb_used': 0,
            'hypervisor_type': obj_fields.HVType.QEMU,
            'hypervisor_version': self._hypervisor_version,
            'hypervisor_hostname': nodename,
            'cpu_info': jsonutils.dumps({
                'arch': obj_fields.Architecture.X86_64,
                'model': 'qemu64', 'vendor': 'QEMU', 'features': [],
                'topology': {'sockets': 1, 'cores': opts.vcpus,
                             'threads': 1}}),
            'disk_available_least': opts.disk_gb,
            'supported_instances': [(obj_fields.Architecture.X86_64,
                                     obj_fields.HVType.QEMU,
                                     obj_fields.VMMode.HVM)],
            'numa_topology': None,
            # A stable node identity across restarts (compute_id file).
            'uuid': nova.virt.node.get_local_node_uuid(),
        }

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        opts = CONF.qemutest
        ratios = self._get_allocation_ratios(
            provider_tree.data(nodename).inventory)
        totals = {
            orc.VCPU: (opts.vcpus, CONF.reserved_host_cpus),
            orc.MEMORY_MB: (opts.memory_mb, CONF.reserved_host_memory_mb),
            orc.DISK_GB: (opts.disk_gb,
                          self._get_reserved_host_disk_gb_from_config()),
        }
        provider_tree.update_inventory(nodename, {
            rc: {'total': total, 'reserved': reserved, 'min_unit': 1,
                 'max_unit': total, 'step_size': 1,
                 'allocation_ratio': ratios[rc]}
            for rc, (total, reserved) in totals.items()})

    # -- inventory of guests -------------------------------------------

    def _machine(self, uuid):
        return machine.Machine(CONF.instances_path, uuid)

    def _existing_machine(self, instance):
        m = self._machine(instance.uuid)
        if not m.exists():
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return m

    def list_instance_uuids(self):
        try:
            names = os.listdir(CONF.instances_path)
        except FileNotFoundError:
            return []
        return [n for n in names if self._machine(n).exists()]

    def _specs(self):
        """Specs of all guests on disk (skipping any removed meanwhile)."""
        for uuid in self.list_instance_uuids():
            try:
                yield self._machine(uuid).load_spec()
            except FileNotFoundError:
                continue

    def list_instances(self):
        return [spec['name'] for spec in self._specs()]

    def get_info(self, instance, use_cache=True):
        m = self._existing_machine(instance)
        state = (power_state.RUNNING if m.is_running()
                 else power_state.SHUTDOWN)
        return hardware.InstanceInfo(state=state)

    def get_console_output(self, context, instance):
        return self._existing_machine(instance).console_tail(
            CONSOLE_TAIL_BYTES)

    # -- lifecycle -----------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        m = self._machine(instance.uuid)
        os.makedirs(m.directory, exist_ok=True)
        try:
            with self._operating(instance.uuid):
                hw = firmware.choose(image_meta, instance.flavor,
                                     self._machine_types)
                if hw['firmware']:  # libvirt: the domain's own NVRAM
                    shutil.copyfile(hw['firmware']['vars'],
                                    m.path(firmware.NVRAM_FILE))
                disks = self._create_disks(context, instance, image_meta,
                                           block_device_info, m)
                if configdrive.required_by(instance):
                    configdrive.update_instance(instance)
                    storage.create_config_drive(
                        m.path('disk.config'), instance, network_info,
                        injected_files, admin_password)
                    disks.append({'path': m.path('disk.config'),
                                  'format': 'raw', 'readonly': True})
                spec = {
                    'name': instance.name,
                    'uuid': instance.uuid,
                    'vcpus': min(instance.flavor.vcpus, os.cpu_count()),
                    'memory_mb': instance.flavor.memory_mb,
                    'disks': disks,
                    'host_ports': [int(p) for p in CONF.qemutest.host_ports],
                }
                spec.update(hw)
                spec.update(self._kernel_boot(context, instance, image_meta))
                with self._lock:
                    spec['nics'] = self._nics(instance, network_info)
                    m.save_spec(spec)
                if power_on:
                    self._start(m)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.error('Spawning guest failed; removing it',
                          instance=instance)
                m.remove()
        LOG.info('Guest started (%s, %s, %s), SSH at %s', self._accel,
                 spec['machine'], 'UEFI' if spec['firmware'] else 'BIOS',
                 ', '.join(n['ssh_address'] for n in spec['nics']),
                 instance=instance)

    def _create_disks(self, context, instance, image_meta, block_device_info,
                      m):
        """The disks in the libvirt driver's order (blockinfo
        _get_disk_mapping): the root device (the volume with boot index 0
        of a volume-backed server, else 'disk'), the flavor's ephemeral disk
        'disk.local' unless ephemeral BDMs ('disk.ephN') replace it, swap,
        then the other volumes."""
        root_volume = volumes.root_volume(block_device_info)
        if root_volume:
            disk = dict(self._volume_disk(root_volume), root=True,
                        bootindex=1)
        else:
            disk = self._root_disk(context, instance, image_meta, m)
        disks = [disk]
        ephemerals = driver.block_device_info_get_ephemerals(block_device_info)
        if instance.flavor.ephemeral_gb and not ephemerals:
            disks.append(self._blank(m, 'disk.local',
                                     instance.flavor.ephemeral_gb * GiB))
        for index, eph in enumerate(ephemerals):
            disks.append(self._blank(m, 'disk.eph%d' % index,
                                     eph['size'] * GiB))
        swap = driver.block_device_info_get_swap(block_device_info)
        swap_mb = swap.get('swap_size') or instance.flavor.swap
        if swap_mb:
            disks.append(self._blank(m, 'disk.swap', swap_mb * 1024 ** 2))
        disks.extend(map(self._volume_disk,
                         volumes.other_volumes(block_device_info)))
        return disks

    def _root_disk(self, context, instance, image_meta, m):
        """The local root 'disk': an overlay on the image (a CD-ROM when
        the image is an ISO, as in get_root_info), or blank."""
        root = m.path('disk')
        disk_format = (image_meta.disk_format
                       if image_meta.obj_attr_is_set('disk_format') else None)
        if instance.image_ref:
            base = self._cache.fetch(context, instance.image_ref)
        else:
            base = None
            storage.create_blank(root, instance.flavor.root_gb * GiB or
                                 CONF.qemutest.blank_disk_gb * GiB)
        disk = {'path': root, 'format': 'qcow2', 'root': True,
                'backing': base, 'bootindex': 1}
        if base and disk_format == 'iso':
            storage.create_overlay(base, root, 0)
            disk.update(cdrom=True, readonly=True, bus=_bus(
                image_meta.properties.get('hw_cdrom_bus'), 'cdrom'))
        elif base:
            storage.create_overlay(base, root, instance.flavor.root_gb * GiB)
        return disk

    @staticmethod
    def _volume_disk(bdm):
        return _volume_disk(bdm['connection_info'], bdm.get('disk_bus'),
                            bdm.get('device_type'))

    @staticmethod
    def _blank(m, name, size_bytes):
        path = m.path(name)
        storage.create_blank(path, size_bytes)
        return {'path': path, 'format': 'qcow2'}

    def _kernel_boot(self, context, instance, image_meta):
        """Direct kernel boot from the image's kernel_id/ramdisk_id."""
        if not instance.kernel_id:
            return {}
        args = image_meta.properties.get('os_command_line',
                                         DEFAULT_KERNEL_ARGS)
        boot = {'kernel': self._cache.fetch(context, instance.kernel_id),
                'append': args}
        if instance.ramdisk_id:
            boot['initrd'] = self._cache.fetch(context, instance.ramdisk_id)
        return boot

    def _nics(self, instance, network_info):
        """One slirp NIC per VIF, SSH forwarded from its fixed IPv4.

        A server without any usable fixed IPv4 gets one NIC on a free
        loopback address, published as access_ip_v4. Call with the lock.
        """
        nics = [{'mac': mac, 'ssh_address': ip}
                for mac, ip in addresses.fixed_ipv4_addresses(network_info)
                if ip]
        if not nics:
            taken = {n['ssh_address'] for spec in self._specs()
                     for n in spec['nics']}
            address = addresses.pick_free(CONF.qemutest.loopback_pool, taken)
            instance.access_ip_v4 = address
            nics = [{'mac': None, 'ssh_address': address}]
        return nics

    def _start(self, m, block_device_info=None):
        """Start the guest; with Nova's block device info, its volumes are
        first brought in line with it (libvirt writes the domain anew
        from it at power on and hard reboot)."""
        if block_device_info is not None and not m.is_running():
            volumes.refresh(m, driver.block_device_info_get_mapping(
                block_device_info), self._volume_disk)
        m.start(CONF.qemutest.qemu_binary, self._accel)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        m = self._existing_machine(instance)
        with self._operating(instance.uuid):
            self._start(m, block_device_info)

    def power_off(self, instance, timeout=0, retry_interval=0):
        m = self._existing_machine(instance)
        with self._operating(instance.uuid):
            if timeout and m.is_running():
                if m.powerdown(timeout, retry_interval):
                    LOG.info('Guest powered off (ACPI)', instance=instance)
                    return
                LOG.info('Guest ignored ACPI power off for %ss; killing',
                         timeout, instance=instance)
            m.kill()

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        m = self._existing_machine(instance)
        with self._operating(instance.uuid):
            if reboot_type == 'SOFT' and m.is_running():
                if not m.powerdown(CONF.qemutest.soft_reboot_timeout, 10):
                    LOG.info('Guest ignored ACPI power off; rebooting hard',
                             instance=instance)
            m.kill()
            self._start(m, block_device_info)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        m = self._existing_machine(instance)
        with self._operating(instance.uuid):
            self._start(m, block_device_info)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        m = self._machine(instance.uuid)
        with self._operating(instance.uuid):
            m.kill()
            if destroy_disks:
                m.remove()
        with self._lock:
            self._running.pop(instance.uuid, None)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        if destroy_disks:
            self.destroy(context, instance, network_info)

    def delete_instance_files(self, instance):
        self._machine(instance.uuid).remove()
        return True

    def manage_image_cache(self, context, all_instances):
        """Drop cached Glance images that no guest on disk refers to."""
        used = set()
        for spec in self._specs():
            used.update(d.get('backing') or d['path'] for d in spec['disks'])
            used.update(spec.get(k) for k in ('kernel', 'initrd'))
        self._cache.remove_unused(
            used, CONF.image_cache.remove_unused_original_minimum_age_seconds)

    def plug_vifs(self, instance, network_info):
        """Nothing to plug: slirp NICs exist only inside QEMU."""

    def unplug_vifs(self, instance, network_info):
        """Nothing to unplug: slirp NICs exist only inside QEMU."""

    # -- volumes -------------------------------------------------------

    def default_root_device_name(self, instance, image_meta, root_bdm):
        """As libvirt's blockinfo.get_root_info: /dev/vda, or an ISO
        image's CD-ROM on its bus (hda on IDE, sda on SATA or SCSI)."""
        if (root_bdm.source_type != 'image'
                or not image_meta.obj_attr_is_set('disk_format')
                or image_meta.disk_format != 'iso'):
            return '/dev/vda'
        bus = _bus(image_meta.properties.get('hw_cdrom_bus'), 'cdrom')
        return '/dev/hda' if bus == 'ide' else '/dev/sda'

    def get_volume_connector(self, instance):
        return volumes.connector(CONF.host, CONF.my_block_storage_ip)

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        """Add the volume to the guest's disks (libvirt: the persistent
        domain) and, when it runs, hot-plug it (libvirt: live)."""
        m = self._existing_machine(instance)
        if encryption:
            raise exception.VolumeEncryptionNotSupported(
                volume_type=connection_info.get('driver_volume_type'),
                volume_id=virt_block_device.get_volume_id(connection_info))
        disk = _volume_disk(connection_info, disk_bus, device_type)
        with self._operating(instance.uuid):
            added = volumes.add(m, disk)
        LOG.info('Volume %s %s at %s', disk['volume_id'], 'attached' if added
                 else 'was attached already', mountpoint, instance=instance)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        """Unplug the volume (waiting for the guest to release it) and
        drop it from the guest's disks; a guest or volume already gone is
        only logged, as by the libvirt driver."""
        m = self._machine(instance.uuid)
        volume_id = virt_block_device.get_volume_id(connection_info)
        if not m.exists():
            LOG.warning('During detach_volume, instance disappeared.',
                        instance=instance)
            return
        with self._operating(instance.uuid):
            removed = volumes.remove(m, volume_id)
        LOG.info('Volume %s %s', volume_id, 'detached' if removed
                 else 'not found in instance', instance=instance)

    # -- rescue --------------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info):
        """Boot the server from a rescue image, as the libvirt driver does.

        With hw_rescue_device or hw_rescue_bus on the rescue image
        (hardware.check_hw_rescue_props), a stable device rescue
        (blockinfo._get_stable_device_rescue_mapping): all the server's
        disks stay, config drive included, and the rescue image is added
        last as a disk or CD-ROM, the only boot device. Otherwise the legacy
        rescue (_get_rescue_disk_mapping): the rescue image is the first
        disk and boots, then the original root disk and a new config drive.
        A kernel_id of the server is booted directly in both, as libvirt
        does. The machine type and firmware stay the server's in a stable
        device rescue; a legacy rescue takes the rescue image's, as libvirt
        builds the domain from the image it is given. The server's own spec
        is kept for unrescue.
        """
        m = self._existing_machine(instance)
        props = image_meta.properties
        stable = hardware.check_hw_rescue_props(image_meta)
        if stable:
            device = props.get('hw_rescue_device', 'disk')
            if device not in ('disk', 'cdrom'):
                raise exception.UnsupportedRescueDevice(device=device)
            cdrom = device == 'cdrom'
            bus = props.get('hw_rescue_bus') or props.get(
                'hw_cdrom_bus' if cdrom else 'hw_disk_bus')
            bus = _bus(bus, device, exception.UnsupportedRescueBus(
                bus=bus, virt='qemu'))
        else:
            hw = firmware.choose(image_meta, instance.flavor,
                                 self._machine_types)
        image_id = (image_meta.id if image_meta.obj_attr_is_set('id')
                    else instance.image_ref)
        with self._operating(instance.uuid):
            m.kill()
            spec = m.original_spec()
            base = self._cache.fetch(context, image_id)
            path = m.path('disk.rescue')
            storage.create_overlay(base, path, 0)
            rescue_disk = {'path': path, 'format': 'qcow2', 'backing': base,
                           'bootindex': 0}
            if stable:
                rescue_disk.update(cdrom=cdrom, readonly=cdrom, bus=bus)
                disks = [_no_boot(d) for d in spec['disks']] + [rescue_disk]
            else:
                disks = [rescue_disk, _no_boot(next(
                    d for d in spec['disks'] if d.get('root')))]
                if configdrive.required_by(instance):
                    config = m.path('disk.config.rescue')
                    storage.create_config_drive(config, instance,
                                                network_info, None,
                                                rescue_password)
                    disks.append({'path': config, 'format': 'raw',
                                  'readonly': True})
            rescued = {k: v for k, v in spec.items()
                       if k not in ('kernel', 'initrd', 'append')}
            rescued['disks'] = disks
            if not stable:
                rescued.update(hw)
                nvram = m.path(firmware.NVRAM_FILE)
                if hw['firmware'] and not os.path.exists(nvram):
                    shutil.copyfile(hw['firmware']['vars'], nvram)
            if instance.kernel_id:
                rescued.update(kernel=self._cache.fetch(
                    context, instance.kernel_id), append=DEFAULT_KERNEL_ARGS)
                if instance.ramdisk_id:
                    rescued['initrd'] = self._cache.fetch(
                        context, instance.ramdisk_id)
            m.save_rescue_spec(rescued)
            self._start(m)
        LOG.info('Guest rescued (%s rescue from image %s)',
                 'stable device' if stable else 'legacy', image_id,
                 instance=instance)

    def unrescue(self, context, instance):
        """Start the server again from its own disks (libvirt: the saved
        unrescue.xml); the rescue files go."""
        m = self._existing_machine(instance)
        if not m.is_rescued():
            raise exception.InstanceNotInRescueMode(instance_id=instance.uuid)
        with self._operating(instance.uuid):
            m.kill()
            m.restore_original_spec()
            self._start(m)

    # -- snapshot --------------------------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        m = self._machine(instance.uuid)
        if not m.exists():
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        root = next(d['path'] for d in m.load_spec()['disks']
                    if d.get('root'))
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        with tempfile.TemporaryDirectory(dir=CONF.instances_path,
                                         prefix='snapshot-') as tmp:
            out = os.path.join(tmp, 'disk.qcow2')
            with self._operating(instance.uuid):
                self._extract(m, root, out)
            update_task_state(
                task_state=task_states.IMAGE_UPLOADING,
                expected_state=task_states.IMAGE_PENDING_UPLOAD)
            LOG.info('Uploading snapshot %s (%d bytes)', image_id,
                     os.path.getsize(out), instance=instance)
            with open(out, 'rb') as data:
                self._image_api.update(
                    context, image_id,
                    {'disk_format': 'qcow2', 'container_format': 'bare'},
                    data=data, purge_props=False)

    @staticmethod
    def _extract(m, root, out):
        """Copy the root disk; a running guest is paused meanwhile (QMP
        'stop' also flushes QEMU's qcow2 caches to the file)."""
        paused = False
        if m.is_running():
            m.qmp('stop')
            paused = True
        try:
            storage.extract_snapshot(root, out)
        finally:
            if paused:
                m.qmp('cont')

    # -- power state watcher ---------------------------------------------

    @contextlib.contextmanager
    def _operating(self, uuid):
        """Mark a guest as being changed by the driver: the watcher must
        not report its stops; afterwards its state is taken as known."""
        with self._lock:
            self._busy.add(uuid)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(uuid)
                self._running[uuid] = self._machine(uuid).is_running()

    def _watch(self):
        while not self._stop_watching.wait(WATCH_INTERVAL):
            try:
                self._report_stopped_guests()
            except Exception:
                LOG.exception('Watching QEMU guests failed')

    def _report_stopped_guests(self):
        for uuid in self.list_instance_uuids():
            with self._lock:
                if uuid in self._busy:
                    continue
                running = self._machine(uuid).is_running()
                was_running = self._running.get(uuid)
                self._running[uuid] = running
            if was_running and not running:
                LOG.info('QEMU of %s exited (guest powered off)', uuid)
                self.emit_event(virtevent.LifecycleEvent(
                    uuid, virtevent.EVENT_LIFECYCLE_STOPPED))


def _bus(bus, device_type, unsupported=None):
    """The bus of a disk or CD-ROM (None: ide for a CD-ROM on the "pc"
    machine, virtio for a disk, as blockinfo.get_disk_bus_for_device_type)."""
    cdrom = device_type == 'cdrom'
    if bus is None:
        return 'ide' if cdrom else 'virtio'
    if (bus, cdrom) not in machine.DEVICES:
        raise unsupported or exception.UnsupportedHardware(model=bus,
                                                           virt='qemu')
    return bus


def _volume_disk(connection_info, disk_bus, device_type):
    return volumes.volume_disk(connection_info, _bus(disk_bus, device_type),
                               device_type)


def _no_boot(disk):
    return {k: v for k, v in disk.items() if k != 'bootindex'}


def _qemu_version(binary):
    """QEMU's version as Nova's version integer (7.2.0 -> 7002000)."""
    out = subprocess.run([binary, '--version'], capture_output=True,
                         text=True).stdout
    match = re.search(r'version (\d+\.\d+\.\d+)', out)
    return versionutils.convert_version_to_int(
        match.group(1) if match else '0.0.0')

"""Configuration options of the qemutest driver ([qemutest] in nova.conf)."""

from oslo_config import cfg

import nova.conf

CONF = nova.conf.CONF

qemutest_group = cfg.OptGroup(
    'qemutest', title='QEMU test driver options')

qemutest_opts = [
    cfg.StrOpt('qemu_binary', default='qemu-system-x86_64',
               help='QEMU system emulator to run guests with.'),
    cfg.StrOpt('accel', default='auto', choices=['auto', 'kvm', 'tcg'],
               help='Accelerator: "auto" probes KVM once and falls back '
                    'to TCG when KVM cannot run a guest.'),
    cfg.IntOpt('vcpus', default=8, min=1,
               help='vCPUs reported to placement.'),
    cfg.IntOpt('memory_mb', default=16384, min=1,
               help='Memory (MiB) reported to placement.'),
    cfg.IntOpt('disk_gb', default=100, min=1,
               help='Local disk (GiB) reported to placement.'),
    cfg.ListOpt('host_ports', default=['8090'],
                help='TCP ports of services on the host loopback '
                     '(127.0.0.1) that guests reach at 10.0.2.2. Guests '
                     'can reach nothing else: slirp runs restricted.'),
    cfg.StrOpt('loopback_pool', default='127.99.0.0/16',
               help='Loopback network to pick a server address from when '
                    'a server has no network (its SSH is forwarded there '
                    'and published as access_ip_v4).'),
    cfg.IntOpt('blank_disk_gb', default=10, min=1,
               help='Size of a blank root disk when the flavor has no '
                    'root disk size.'),
    cfg.IntOpt('soft_reboot_timeout', default=60, min=0,
               help='Seconds a soft reboot waits for the guest to power '
                    'off before restarting it hard.'),
]

CONF.register_group(qemutest_group)
CONF.register_opts(qemutest_opts, group=qemutest_group)

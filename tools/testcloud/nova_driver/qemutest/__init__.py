"""Nova compute driver for the imgfac-nova test cloud: real QEMU guests.

What a guest sees (machine type pc, TCG unless KVM really works):
- /dev/vda: root disk, a qcow2 overlay on the Glance image sized to the
  flavor (blank when the image is an ISO or there is no image); then
  ephemeral/swap disks; then the config drive (ISO 9660, label config-2,
  read-only virtio disk) when one is requested.
- An ISO image (disk_format iso) is an IDE CD-ROM and is booted first.
- kernel_id/ramdisk_id/os_command_line image properties: direct kernel boot
  (default command line "root=/dev/vda console=ttyS0").
- ttyS0 goes to console.log (Nova's console output).
- One virtio NIC per Neutron port, user-mode (slirp, restricted): DHCP gives
  10.0.2.15, gateway 10.0.2.1; tcp 22 is forwarded from the port's fixed IP
  on the host's loopback; 10.0.2.2:PORT reaches 127.0.0.1:PORT on the host
  for the ports in [qemutest] host_ports (8090), and nothing else.
"""

from .driver import QemuTestDriver

__all__ = ['QemuTestDriver']

"""Nova compute driver for the imgfac-nova test cloud: real QEMU guests.

What a guest sees (machine type hw_machine_type or pc; SeaBIOS, or UEFI
firmware with its own NVRAM for hw_firmware_type=uefi, with Secure Boot
for os_secure_boot as the libvirt driver decides: firmware.py; TCG unless
KVM really works), disks in
the libvirt driver's order (nova/virt/libvirt/blockinfo.py):
- the root device: a qcow2 overlay on the Glance image sized to the flavor,
  /dev/vda (blank when there is no image); for an ISO image (disk_format
  iso) the root device is the image itself as an IDE CD-ROM (hw_cdrom_bus:
  ide, sata or scsi) and there is no blank disk; a snapshot copies the root
  device;
- a volume-backed server's root device is instead its Cinder volume with
  boot index 0, opened by QEMU's own rbd driver from Cinder's
  connection_info (volumes.py; the device's serial is the volume id);
- then the flavor's ephemeral disk (disk.local) or ephemeral BDMs
  (disk.ephN), swap, the other volumes, and the config drive (ISO 9660,
  label config-2, read-only virtio disk) when one is requested; volumes
  attached later come last, hot-plugged into a running guest;
- rescue: with hw_rescue_device/hw_rescue_bus on the rescue image, all of
  the above stay and the rescue image is added last (a disk, or a CD-ROM on
  hw_rescue_bus, default ide) as the only boot device; without them the
  legacy rescue: rescue image first, then the root disk and a new config
  drive. Unrescue starts the server from its own disks again. Nova lets a
  volume-backed server be rescued only the stable way (the driver reports
  COMPUTE_RESCUE_BFV).
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

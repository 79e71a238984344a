"""Where a build's machines run: Nova (servers, their faults and quotas),
local QEMU and libvirt."""

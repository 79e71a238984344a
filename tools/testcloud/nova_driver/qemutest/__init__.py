"""Nova compute driver for the imgfac-nova test cloud: real QEMU guests."""

from .driver import QemuTestDriver

__all__ = ['QemuTestDriver']

"""Reaching the guest (SSH, host keys, jump hosts, proxies) and customizing it
(repositories, packages, files, commands, ICICLE, sysprep)."""

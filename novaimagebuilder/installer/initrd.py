"""Adding files to an installer's initrd.

The Linux kernel unpacks every cpio archive of a concatenated initrd into
the initial root file system, later ones over earlier ones; so a file is
added by appending a small gzip'd "newc" cpio archive. This is how a preseed
reaches the Debian installer whatever the cloud offers (no metadata service
or readable config drive needed): d-i reads /preseed.cfg from its initrd.
"""
import gzip
import shutil

_TRAILER = "TRAILER!!!"


def _entry(name, mode, data, inode):
    """One newc cpio record: header, NUL-terminated name and data, each
    padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % field for field in fields)
    record = header + encoded
    record += b"\0" * (-len(record) % 4) + data
    return record + b"\0" * (-len(record) % 4)


def cpio(files):
    """A newc cpio archive of ``files`` ({path: bytes}, regular files with
    mode 0600, owned by root) with the parent directories they need."""
    parts, directories = [], set()
    for path in sorted(files):
        parents = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            directories.add("/".join(parents[:depth]))
    inode = 1
    for directory in sorted(directories):
        parts.append(_entry(directory, 0o40755, b"", inode))
        inode += 1
    for path, data in sorted(files.items()):
        parts.append(_entry(path.strip("/"), 0o100600, data, inode))
        inode += 1
    parts.append(_entry(_TRAILER, 0, b"", 0))
    return b"".join(parts)


def with_files(ramdisk, files, out):
    """Write ``out``: the initrd ``ramdisk`` with ``files`` ({path: bytes})
    added in an archive appended to it."""
    with open(out, "wb") as target:
        with open(ramdisk, "rb") as source:
            shutil.copyfileobj(source, target, 1024 * 1024)
        # The kernel skips zero bytes between archives; start on a block.
        target.write(b"\0" * (-target.tell() % 512))
        target.write(gzip.compress(cpio(files), mtime=0))
    return out

"""Files added to an initrd: checked by unpacking with the real cpio tool."""
import gzip
import os
import subprocess

from novaimagebuilder.installer import initrd


def test_appended_archive_unpacks_with_cpio(tmp_path):
    base = tmp_path / "base.gz"
    base.write_bytes(gzip.compress(initrd.cpio({"init": b"#!/bin/sh\n"})))
    out = initrd.with_files(str(base), {"preseed.cfg": b"d-i x string y\n",
                                        "etc/imgfac/a": b"1"},
                            str(tmp_path / "initrd"))
    data = open(out, "rb").read()
    assert data.startswith(base.read_bytes())
    # Like the kernel: each gzip member after the zero padding, in order.
    rest = data[len(base.read_bytes()):].lstrip(b"\0")
    root = tmp_path / "root"
    root.mkdir()
    for archive in (gzip.decompress(base.read_bytes()), gzip.decompress(rest)):
        subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=root,
                       check=True)
    assert (root / "preseed.cfg").read_bytes() == b"d-i x string y\n"
    assert (root / "etc/imgfac/a").read_bytes() == b"1"
    assert (root / "init").exists()
    assert oct(os.stat(root / "preseed.cfg").st_mode & 0o777) == "0o600"

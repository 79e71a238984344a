"""Disk formats: converting an image with qemu-img, checking the result.

Each target format is a :class:`Format`: the qemu-img output format and
options, and the Glance ``disk_format`` / ``container_format`` it is uploaded
as. :func:`convert` runs ``qemu-img convert -p`` and turns its progress
output into callbacks; :func:`verify` checks the result with ``qemu-img
info`` (and ``qemu-img check`` where the format has consistency checks)
before an image counts as complete. OVA archives are made by
:mod:`novaimagebuilder.ova`.
"""
import dataclasses
import json
import os
import re
import select
import subprocess
import tempfile

from novaimagebuilder import errors

MiB = 1024 ** 2
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


@dataclasses.dataclass(frozen=True)
class Format:
    """How to make one target format."""

    name: str
    #: qemu-img's name of the format (-O) and what ``qemu-img info`` reports.
    qemu_format: str
    #: qemu-img creation options (-o).
    options: tuple = ()
    #: Compress the clusters (-c, qcow2 only).
    compressed: bool = False
    #: Round the virtual size up to a whole MiB (Azure's rule for VHDs).
    whole_mib: bool = False
    #: ``qemu-img check`` knows how to check this format.
    checkable: bool = False
    disk_format: str = ""
    container_format: str = "bare"

    def convert_arguments(self, source, source_format, destination,
                          existing=False):
        """The ``qemu-img convert`` argument list (without ``qemu-img``)."""
        args = ["convert", "-p", "-f", source_format, "-O", self.qemu_format]
        if self.compressed:
            args.append("-c")
        if existing:
            args.append("-n")  # the destination was created to size first
        elif self.options:
            args += ["-o", ",".join(self.options)]
        return args + [source, destination]


FORMATS = {f.name: f for f in (
    Format("qcow2", "qcow2", ("compat=1.1",), compressed=True,
           checkable=True, disk_format="qcow2"),
    Format("raw", "raw", disk_format="raw"),
    Format("vmdk", "vmdk", ("subformat=streamOptimized",
                            "adapter_type=lsilogic"), checkable=True,
           disk_format="vmdk"),
    Format("vhd", "vpc", ("subformat=fixed", "force_size=on"),
           whole_mib=True, disk_format="vhd"),
    Format("vhdx", "vhdx", ("subformat=dynamic",), checkable=True,
           disk_format="vhdx"),
)}


def qemu_img(*args):
    """Run qemu-img; its stdout. A failure is a one-line BuildError."""
    result = _qemu_img(*args)
    if result.returncode != 0:
        raise _failed(args[0], result)
    return result.stdout


def _qemu_img(*args):
    try:
        result = subprocess.run(["qemu-img", *args], capture_output=True,
                                text=True)
    except FileNotFoundError:
        raise errors.BuildError("qemu-img is not installed (Debian: apt-get "
                                "install qemu-utils)") from None
    return result


def _failed(what, result):
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return errors.BuildError("qemu-img %s failed: %s" % (
        what, lines[-1] if lines else "exit %d" % result.returncode))


def info(path, image_format=None):
    """``qemu-img info`` of ``path`` as a dict (format, virtual-size, ...);
    the format is probed unless ``image_format`` is given."""
    forced = ("-f", image_format) if image_format else ()
    result = _qemu_img("info", "--output", "json", *forced, path)
    if result.returncode:
        raise _failed("info", result)
    return json.loads(result.stdout)


def round_up_mib(size):
    """``size`` rounded up to a whole MiB."""
    return -(-size // MiB) * MiB


def convert(source, destination, fmt, progress=None, cancel=None):
    """Convert the image ``source`` to ``fmt`` (a :class:`Format`) at
    ``destination``; ``progress(percent)`` is called as qemu-img reports it.

    On failure or cancellation nothing is left at ``destination``.
    """
    source_info = info(source)
    existing = False
    try:
        if fmt.whole_mib:
            size = round_up_mib(source_info["virtual-size"])
            created = _qemu_img("create", "-q", "-f", fmt.qemu_format, "-o",
                                ",".join(fmt.options), destination, str(size))
            if created.returncode:
                raise _failed("create", created)
            existing = True
        _run_with_progress(fmt.convert_arguments(
            source, source_info["format"], destination, existing),
            progress, cancel)
    except BaseException:
        _remove(destination)
        raise


def _run_with_progress(args, progress, cancel):
    """Run ``qemu-img ARGS`` whose -p output goes to stdout, reporting it."""
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(["qemu-img", *args],
                                    stdout=subprocess.PIPE, stderr=stderr)
        except FileNotFoundError:
            raise errors.BuildError("qemu-img is not installed (Debian: "
                                    "apt-get install qemu-utils)") from None
        try:
            pending = b""
            while True:
                if cancel is not None and cancel.is_set():
                    raise errors.Cancelled()
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                pending += chunk
                found = _PROGRESS.findall(pending)
                if found and progress is not None:
                    progress(float(found[-1]))
                pending = pending[-64:]
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if proc.returncode:
            stderr.seek(0)
            text = stderr.read().decode(errors="replace")
            raise _failed(args[0], subprocess.CompletedProcess(
                args, proc.returncode, "", text))


def verify(path, fmt):
    """Check that ``path`` is a sound image in ``fmt``; returns its info.

    ``qemu-img info`` must report the format (for VMDKs the subformat too,
    for VHDs a whole MiB of virtual size)
    and ``qemu-img check`` must find no errors where the format has checks.
    """
    # A fixed VHD has its only header at the end, where probing does not
    # look: open it as a VHD, which checks that footer.
    found = info(path, "vpc" if fmt.qemu_format == "vpc" else None)
    if found["format"] != fmt.qemu_format:
        raise errors.BuildError("%s is a %s image, not %s" % (
            path, found["format"], fmt.qemu_format))
    wanted = dict(o.split("=", 1) for o in fmt.options)
    subformat = (found.get("format-specific") or {}).get("data", {}).get(
        "create-type")
    if fmt.qemu_format == "vmdk" and subformat != wanted["subformat"]:
        raise errors.BuildError("%s is a %s VMDK, not %s" % (
            path, subformat, wanted["subformat"]))
    if fmt.whole_mib and found["virtual-size"] % MiB:
        raise errors.BuildError("%s has a virtual size of %d bytes, not a "
                                "whole MiB" % (path, found["virtual-size"]))
    if fmt.checkable:
        checked = _qemu_img("check", "-f", fmt.qemu_format, path)
        if checked.returncode:
            raise _failed("check", checked)
    return found


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Disk formats: converting an image with qemu-img, checking the result.

Each target format is a :class:`Format`: the qemu-img output format and
options, and the Glance ``disk_format`` / ``container_format`` it is uploaded
as. :func:`convert` runs ``qemu-img convert -p`` and turns its progress
output into callbacks; :func:`verify` checks the result with ``qemu-img
info`` (and ``qemu-img check`` where the format has consistency checks)
before an image counts as complete. OVA archives are made by
:mod:`novaimagebuilder.images.ova`.

qemu-img is always told the format of an image (never left to probe bytes a
guest wrote), and :func:`inspect` checks an image with oslo.utils' format
inspector before qemu-img, QEMU or Glance gets it: no backing file, no data
file, no extent naming another file, and the format it claims.
"""
import collections
import dataclasses
import json
import os
import re
import select
import subprocess
import tempfile
import time

from oslo_utils.imageutils import format_inspector

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


#: Glance disk formats that are not disk images (kernels and ramdisks):
#: qemu-img never opens them and they have no header to inspect.
NOT_DISKS = ("aki", "ari", "ami")
#: The inspector's names of formats qemu-img spells otherwise.
_INSPECTOR_NAMES = {"vpc": "vhd"}
#: What else the inspector may find in an image of a format: a whole disk
#: with a partition table ("gpt", as Nova allows for raw images), and a
#: fixed VHD, whose only header is its footer (read by ``qemu-img -f vpc``).
_ALSO_FOUND = {"raw": ("gpt",), "vhd": ("raw", "gpt")}
#: How a failed safety check of the inspector reads in an error.
_PROBLEMS = {"backing_file": "a backing file",
             "data_file": "an external data file",
             "unknown_features": "qcow2 features qemu-img may not know"}


def qemu_format(disk_format):
    """qemu-img's name of the Glance ``disk_format``."""
    return {"vhd": "vpc"}.get(disk_format, disk_format)


def inspect(path, claimed, what, container_format="bare"):
    """Refuse the image ``path`` unless it is safe to hand to qemu-img, QEMU
    or Glance as ``claimed`` (a qemu-img or Glance format name): the format
    inspector must find that format and no backing file, data file or
    extent naming another file. A refusal is a one-line BuildError naming
    ``what``. Images in a container (OVA: its VMDK was checked when it was
    packed) and kernels and ramdisks (:data:`NOT_DISKS`) are not disk images
    and pass."""
    check = Inspection(claimed, what, container_format)
    try:
        with open(path, "rb") as handle:
            while not check.decided and check.feed(handle.read(64 * 1024)):
                pass
    except OSError as exc:
        raise errors.BuildError("%s cannot be read: %s" % (
            what, exc.strerror or exc)) from None
    check.verdict()


class Inspection:
    """:func:`inspect` of bytes as they stream past: ``feed`` each chunk
    (until ``decided``; an empty chunk is the end), then ``verdict()``
    raises the one-line refusal, if any."""

    def __init__(self, claimed, what, container_format="bare"):
        self.claimed, self.what = claimed, what
        self.name = _INSPECTOR_NAMES.get(claimed, claimed)
        self.decided = container_format != "bare" or claimed in NOT_DISKS
        if not self.decided and \
                format_inspector.get_inspector(self.name) is None:
            raise errors.BuildError("%s claims the format %s, which cannot "
                                    "be inspected" % (what, claimed))
        self._pending = collections.deque()
        self._wrapper = format_inspector.InspectWrapper(
            iter(self._pending.popleft, None))
        self._found = None

    def feed(self, chunk):
        """Inspect ``chunk``; False at the end of the bytes."""
        if self.decided:
            return bool(chunk)
        try:
            if chunk:
                self._pending.append(chunk)
                next(self._wrapper)
            else:
                self._wrapper.close()
            if self._wrapper.formats is not None:
                self.decided, self._found = True, self._detected()
        except format_inspector.ImageFormatError as exc:
            self.decided, self._found = True, exc
        return bool(chunk)

    def _detected(self):
        """The inspector of the one format found (raw: none)."""
        found = {str(inspector): inspector
                 for inspector in self._wrapper.formats}
        if set(found) == {"iso", "gpt"}:  # a bootable ISO's partition table
            return found["iso"]
        return self._wrapper.format  # several formats: ImageFormatError

    def verdict(self):
        """Raise the refusal of the bytes fed (a one-line BuildError)."""
        if not self.decided:
            self.feed(b"")
        found, what, claimed = self._found, self.what, self.claimed
        if found is None:
            return
        if isinstance(found, format_inspector.ImageFormatError):
            raise errors.BuildError("%s claims %s but cannot be inspected: "
                                    "%s" % (what, claimed, found))
        problems = _problems(found)
        detected = str(found)
        if detected != self.name and \
                detected not in _ALSO_FOUND.get(self.name, ()):
            if detected == "raw":
                raise errors.BuildError("%s claims %s but holds no %s header"
                                        % (what, claimed, claimed))
            raise errors.BuildError("%s claims %s but holds a %s header%s" % (
                what, claimed, detected,
                " with " + " and ".join(problems) if problems else ""))
        if problems:
            raise errors.BuildError("%s (%s) is refused: it has %s" % (
                what, claimed, " and ".join(problems)))


def _problems(found):
    """What the inspector's safety checks find wrong with ``found``."""
    try:
        found.safety_check()
    except format_inspector.SafetyCheckFailed as exc:
        return [_PROBLEMS.get(name, "a failed %s check (%s)" % (
            name.replace("_", " "), failure))
            for name, failure in sorted(exc.failures.items())]
    except format_inspector.ImageFormatError as exc:
        return ["a header that cannot be read (%s)" % exc]
    return []


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


def info(path, image_format):
    """``qemu-img info`` of ``path``, an image in ``image_format``, as a dict
    (format, virtual-size, ...)."""
    result = _qemu_img("info", "--output", "json", "-f", image_format, path)
    if result.returncode:
        raise _failed("info", result)
    return json.loads(result.stdout)


def round_up_mib(size):
    """``size`` rounded up to a whole MiB."""
    return -(-size // MiB) * MiB


def convert(source, source_format, destination, fmt, progress=None,
            cancel=None, what=None, timeout=None):
    """Convert the image ``source``, in ``source_format``, to ``fmt`` (a
    :class:`Format`) at ``destination``; ``progress(percent)`` is called as
    qemu-img reports it. ``source`` is inspected first (:func:`inspect`;
    ``what`` names it in a refusal). A conversion still running after
    ``timeout`` seconds is stopped (WaitTimeout).

    On failure or cancellation nothing is left at ``destination``.
    """
    source_format = qemu_format(source_format)
    inspect(source, source_format, what or source)
    source_info = info(source, source_format)
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
            source, source_format, destination, existing),
            progress, cancel, timeout)
    except BaseException:
        _remove(destination)
        raise


def _run_with_progress(args, progress, cancel, timeout=None):
    """Run ``qemu-img ARGS`` whose -p output goes to stdout, reporting it,
    for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout if timeout else None
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
                if deadline is not None and time.monotonic() > deadline:
                    raise errors.WaitTimeout(
                        "qemu-img %s did not end within %d s" % (args[0],
                                                                 timeout))
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

    It must pass :func:`inspect` as ``fmt``, ``qemu-img info`` must read it
    (for VMDKs with the subformat, for VHDs a whole MiB of virtual size) and
    ``qemu-img check`` must find no errors where the format has checks.
    """
    inspect(path, fmt.qemu_format, path)
    found = info(path, fmt.qemu_format)
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

"""The installer ISO a build boots: a remastered copy of the install ISO.

An ISO boots through its own boot loader (ISOLINUX/SYSLINUX on BIOS, GRUB
on EFI and some BIOS ISOs), which never sees the kernel arguments a build
gives: the serial console the build reads, and what points the installer
at its script (``inst.ks=``, ``autoinstall``). So, as Image Factory / Oz
do, an ISO install boots a copy of the ISO in which every boot loader
configuration is replaced by one entry that boots the install kernel and
initrd at once, with the build's kernel arguments. An installer that reads
its script from the initrd (d-i's ``/preseed.cfg``) also gets the script
appended to that initrd (:func:`initrd.with_files`). xorriso writes the
copy, replaying the ISO's boot records (El Torito catalog, hybrid MBR, EFI
image) as they were.

A copy with a script holds a root password hash: callers write it to a
private directory; nothing here logs it or puts it on a command line.
"""
import dataclasses
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile

from novaimagebuilder import errors
from novaimagebuilder.installer import initrd as initrd_mod

#: Names of the ISOLINUX/SYSLINUX configurations a boot loader starts from.
SYSLINUX_CONFIGS = ("isolinux.cfg", "syslinux.cfg")
GRUB_CONFIG = "grub.cfg"
#: The name d-i (and other installers) give the text-mode install entry:
#: preferred, as the build watches a serial console.
INSTALL_LABEL = "install"
#: Kernel arguments of the ISO's entry that are not kept: the initrd is
#: named by the new entry, and a framebuffer mode needs a display.
_DROPPED_ARG = re.compile(r"^(initrd|vga)=")
_INCLUDE_DEPTH = 8


@dataclasses.dataclass
class Entry:
    """A boot entry: kernel and initrd paths as the configuration writes
    them, its kernel arguments (without initrd=), the ISO directory its
    relative paths start from, and (GRUB) its command words."""

    kernel: str
    initrds: list
    args: str
    directory: str = "/"
    commands: tuple = ("linux", "initrd")

    def initrd_path(self):
        """The ISO path of the initrd the installer's files go into (the
        last one: later archives overlay earlier ones)."""
        return iso_path(self.initrds[-1], self.directory)


def iso_path(path, directory="/"):
    """``path`` of a boot configuration as an absolute ISO path (GRUB's
    ``(device)`` prefix dropped)."""
    path = re.sub(r"^\([^)]*\)", "", path)
    return posixpath.normpath(posixpath.join(directory, path))


def _args(words):
    """Kernel arguments without the dropped ones; the installer's own ones
    go before ``---`` (after it: the installed system's)."""
    return [w for w in words if not _DROPPED_ARG.match(w)]


def _with_cmdline(args, cmdline):
    words = args.split()
    if "---" in words:
        cut = words.index("---")
        return " ".join(words[:cut] + cmdline.split() + words[cut:])
    return " ".join(words + cmdline.split())


# -- ISOLINUX / SYSLINUX -------------------------------------------------------

def syslinux_entry(read, config):
    """The install entry of the SYSLINUX configuration ``config`` (an ISO
    path; ``read(path)`` gives a file's text or None), following INCLUDE and
    MENU INCLUDE: the label named "install", else the default one, else the
    first with a kernel. None when there is none."""
    labels, default = [], {"name": None, "menu": None}
    directory = posixpath.dirname(config)

    def parse(path, depth):
        text = read(path)
        if text is None or depth > _INCLUDE_DEPTH:
            return
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            keyword = words[0].lower()
            if keyword == "menu" and len(words) > 1:
                if words[1].lower() == "include" and len(words) > 2:
                    parse(iso_path(words[2], directory), depth + 1)
                elif words[1].lower() == "default" and labels:
                    default["menu"] = labels[-1]
            elif keyword == "include" and len(words) > 1:
                parse(iso_path(words[1], directory), depth + 1)
            elif keyword == "default" and len(words) > 1:
                default["name"] = default["name"] or words[1]
            elif keyword == "label" and len(words) > 1:
                labels.append({"name": words[1], "kernel": None,
                               "append": [], "initrd": None})
            elif labels and keyword in ("kernel", "linux") and len(words) > 1:
                labels[-1]["kernel"] = words[1]
            elif labels and keyword == "initrd" and len(words) > 1:
                labels[-1]["initrd"] = words[1]
            elif labels and keyword == "append":
                labels[-1]["append"] = words[1:]

    parse(config, 0)
    for label in labels:
        initrds = [w[len("initrd="):] for w in label["append"]
                   if w.startswith("initrd=")]
        label["initrds"] = (label["initrd"] or (initrds[-1] if initrds
                                                else "")).split(",")
    usable = [label for label in labels
              if label["kernel"] and label["initrds"] != [""]
              and not label["kernel"].endswith(".c32")]
    chosen = (
        [lab for lab in usable if lab["name"].lower() == INSTALL_LABEL]
        + [lab for lab in usable if lab["name"] == default["name"]]
        + [lab for lab in usable if lab is default["menu"]] + usable)
    if not chosen:
        return None
    label = chosen[0]
    return Entry(label["kernel"], label["initrds"],
                 " ".join(_args(label["append"])), directory)


def syslinux_config(entry, cmdline):
    """A SYSLINUX configuration booting ``entry`` at once (no menu), with
    ``cmdline`` among its arguments."""
    return "\n".join([
        "# Written by imgfac-nova: boot the installer at once.",
        "serial 0 115200",
        "default imgfac",
        "prompt 0",
        "timeout 1",
        "label imgfac",
        "  kernel %s" % entry.kernel,
        "  append initrd=%s %s" % (",".join(entry.initrds),
                                   _with_cmdline(entry.args, cmdline)),
    ]) + "\n"


# -- GRUB ---------------------------------------------------------------------

_MENUENTRY = re.compile(r"^\s*menuentry\s+(?:'([^']*)'|\"([^\"]*)\"|(\S+))")


def grub_entry(text):
    """The install entry of a GRUB configuration: the menuentry titled
    "Install", else the first with a kernel and an initrd; None when there
    is none. Its command words (linux/linuxefi, initrd/initrdefi) are
    kept."""
    entries, current = [], None
    for line in text.splitlines():
        match = _MENUENTRY.match(line)
        if match:
            current = {"title": next(g for g in match.groups()
                                     if g is not None),
                       "linux": None, "initrd": None}
            entries.append(current)
            continue
        words = line.split()
        if current is None or not words:
            continue
        if words[0] in ("linux", "linuxefi", "linux16") and len(words) > 1:
            current["linux"] = words
        elif words[0] in ("initrd", "initrdefi", "initrd16") and \
                len(words) > 1:
            current["initrd"] = words
    usable = [e for e in entries if e["linux"] and e["initrd"]]
    chosen = [e for e in usable if e["title"].strip().lower()
              == INSTALL_LABEL] + usable
    if not chosen:
        return None
    found = chosen[0]
    return Entry(found["linux"][1], found["initrd"][1:],
                 " ".join(_args(found["linux"][2:])),
                 commands=(found["linux"][0], found["initrd"][0]))


def grub_config(entry, cmdline):
    """A GRUB configuration booting ``entry`` at once."""
    return "\n".join([
        "# Written by imgfac-nova: boot the installer at once.",
        "set default=0",
        "set timeout=0",
        "menuentry 'imgfac-nova install' {",
        "    %s %s %s" % (entry.commands[0], entry.kernel,
                          _with_cmdline(entry.args, cmdline)),
        "    %s %s" % (entry.commands[1], " ".join(entry.initrds)),
        "}",
    ]) + "\n"


# -- the ISO -----------------------------------------------------------------

def _xorriso(*args):
    tool = shutil.which("xorriso")
    if tool is None:
        raise errors.BuildError("an ISO install needs xorriso (to remaster "
                                "the ISO); install it")
    result = subprocess.run([tool, "-abort_on", "FAILURE", *args],
                            capture_output=True, text=True)
    if result.returncode:
        lines = [line for line in result.stderr.splitlines()
                 if "FAILURE" in line or "SORRY" in line] or \
            result.stderr.strip().splitlines() or ["exit %d"
                                                   % result.returncode]
        raise errors.BuildError("xorriso failed on the installer ISO: %s"
                                % lines[-1].strip())
    return result.stdout


def iso_files(iso):
    """The paths of the regular files in ``iso``."""
    out = _xorriso("-indev", iso, "-find", "/", "-type", "f")
    return [shlex.split(line)[0] for line in out.splitlines() if line.strip()]


def extract(iso, path, target):
    """Copy the ISO file ``path`` to ``target``."""
    _xorriso("-osirrox", "on", "-indev", iso, "-extract", path, target)
    os.chmod(target, 0o600)
    return target


def with_files(iso, files, cmdline, out):
    """Write ``out``: a copy of the ISO ``iso`` whose boot entries boot its
    install kernel at once with ``cmdline``, ``files`` ({path: bytes}, may
    be empty) added to that kernel's initrd. A BuildError when the ISO has
    no ISOLINUX, SYSLINUX or GRUB entry with a kernel and an initrd."""
    paths = set(iso_files(iso))
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(
            out)), prefix=".remaster-") as scratch:
        count = [0]

        def local(name):
            count[0] += 1
            return os.path.join(scratch, "%d-%s" % (count[0],
                                                    posixpath.basename(name)))

        texts = {}

        def read(path):
            if path not in paths:
                return None
            if path not in texts:
                with open(extract(iso, path, local(path)), "rb") as handle:
                    texts[path] = handle.read().decode("utf-8", "replace")
            return texts[path]

        configs, initrds = {}, set()
        for path in sorted(paths):
            name = posixpath.basename(path).lower()
            if name in SYSLINUX_CONFIGS:
                entry = syslinux_entry(read, path)
                if entry is not None:
                    configs[path] = syslinux_config(entry, cmdline)
                    initrds.add(entry.initrd_path())
            elif name == GRUB_CONFIG:
                entry = grub_entry(read(path))
                if entry is not None:
                    configs[path] = grub_config(entry, cmdline)
                    initrds.add(entry.initrd_path())
        if not configs:
            raise errors.BuildError(
                "cannot boot the installer with the build's kernel "
                "arguments: the ISO has no ISOLINUX, SYSLINUX or GRUB boot "
                "entry with a kernel and an initrd")
        missing = sorted(initrds - set(paths))
        if missing:
            raise errors.BuildError("the ISO's boot entry names the initrd "
                                    "%s, which it does not hold" % missing[0])
        mapped = []
        for path, text in sorted(configs.items()):
            written = local(path)
            with open(written, "w") as handle:
                handle.write(text)
            mapped += ["-map", written, path]
        for path in sorted(initrds) if files else ():
            plain = extract(iso, path, local(path))
            mapped += ["-map", initrd_mod.with_files(plain, files,
                                                     local(path)), path]
        if os.path.exists(out):
            os.unlink(out)
        _xorriso("-indev", iso, "-outdev", out, "-boot_image", "any",
                 "replay", *mapped, "-commit")
    os.chmod(out, 0o600)
    return out

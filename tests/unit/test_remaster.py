"""Remastered installer ISOs: small ISOs made here with xorriso (laid out as
Debian's mini.iso and netinst CD are), remastered, then read back with
xorriso and the real cpio tool."""
import gzip
import os
import subprocess

import pytest

from novaimagebuilder import errors
from novaimagebuilder.installer import initrd
from novaimagebuilder.installer import remaster

CMDLINE = "console=ttyS0 priority=critical"
PRESEED = b"d-i passwd/root-password-crypted password $6$salt$hash\n"

#: Debian's mini.iso: ISOLINUX at the root, a graphical menu that waits
#: for ever (timeout 0), the text entry "install" in txt.cfg, the
#: graphical one marked default.
MINI_ISO = {
    "isolinux.cfg": "path \nprompt 0\ntimeout 0\ninclude menu.cfg\n"
                    "default vesamenu.c32\n",
    "menu.cfg": "menu hshift 4\ninclude stdmenu.cfg\ninclude gtk.cfg\n"
                "include txt.cfg\n",
    "stdmenu.cfg": "menu background splash.png\n",
    "gtk.cfg": "default installgui\nlabel installgui\n  menu label ^Graphical"
               " install\n  menu default\n  kernel linux\n  append "
               "vga=788 initrd=gtk/initrd.gz --- quiet\n",
    "txt.cfg": "label install\n\tmenu label ^Install\n\tkernel linux\n"
               "\tappend vga=788 initrd=initrd.gz --- quiet \n",
    "boot/grub/grub.cfg":
        "if loadfont $font ; then\n  set gfxmode=800x600\nfi\n"
        "menuentry 'Graphical install' {\n    linux /linux vga=788 --- "
        "quiet\n    initrd /gtk/initrd.gz\n}\n"
        "menuentry 'Install' {\n    set background_color=black\n"
        "    linux    /linux vga=788 --- quiet\n"
        "    initrd   /initrd.gz\n}\n",
    "linux": "kernel image",
    "vesamenu.c32": "menu module",
}


def gz_cpio(files):
    return gzip.compress(initrd.cpio(files), mtime=0)


def make_iso(tmp_path, files, label="TEST-ISO", boot=True):
    """An ISO of ``files`` ({path: text or bytes}); ``boot``: with an El
    Torito no-emulation boot image (a stand-in for isolinux.bin)."""
    tree = tmp_path / ("tree-" + label)
    for path, data in files.items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())
    argv = ["xorriso", "-as", "mkisofs", "-quiet", "-o",
            str(tmp_path / (label + ".iso")), "-V", label, "-J", "-R"]
    if boot:
        (tree / "isolinux.bin").write_bytes(b"\xfa" * 2048)
        argv += ["-b", "isolinux.bin", "-c", "boot.cat", "-no-emul-boot",
                 "-boot-load-size", "4", "-boot-info-table"]
    subprocess.run(argv + [str(tree)], check=True, capture_output=True)
    return str(tmp_path / (label + ".iso"))


def read(iso, path, tmp_path):
    target = tmp_path / ("read-" + path.replace("/", "_"))
    if target.exists():
        target.unlink()
    return open(remaster.extract(iso, path, str(target)), "rb").read()


def unpack_appended(data, original, directory):
    """The files of the archive appended to ``original`` in ``data`` (the
    initrd as the kernel reads it: each gzip member after zero padding)."""
    assert data.startswith(original)
    rest = data[len(original):].lstrip(b"\0")
    directory.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(rest),
                   cwd=directory, check=True)
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in directory.rglob("*") if p.is_file()}


@pytest.fixture
def mini_iso(tmp_path):
    files = dict(MINI_ISO, **{"initrd.gz": gz_cpio({"init": b"d-i"}),
                              "gtk/initrd.gz": gz_cpio({"init": b"gtk"})})
    return make_iso(tmp_path, files), files


def test_mini_iso_boots_its_text_installer_at_once_with_the_preseed(
        mini_iso, tmp_path):
    iso, files = mini_iso
    out = remaster.with_files(iso, {"preseed.cfg": PRESEED}, CMDLINE,
                              str(tmp_path / "out.iso"))
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"

    # ISOLINUX: one entry, no menu, booted after a tenth of a second.
    config = read(out, "/isolinux.cfg", tmp_path).decode()
    assert "vesamenu" not in config and "include" not in config
    lines = [line.split() for line in config.splitlines()]
    assert ["prompt", "0"] in lines and ["timeout", "1"] in lines
    assert ["default", "imgfac"] in lines
    assert ["append", "initrd=initrd.gz", "console=ttyS0",
            "priority=critical", "---", "quiet"] in lines
    shown = {path: read(out, "/" + path, tmp_path).decode()
             for path in ("isolinux.cfg", "txt.cfg", "gtk.cfg")}
    entry = remaster.syslinux_entry(lambda p: shown.get(p.lstrip("/")),
                                    "/isolinux.cfg")
    assert (entry.kernel, entry.initrds) == ("linux", ["initrd.gz"])
    assert entry.args == "console=ttyS0 priority=critical --- quiet"
    # The files it included are left as they were.
    assert shown["txt.cfg"] == MINI_ISO["txt.cfg"]

    # GRUB: the text "Install" entry, at once.
    grub = read(out, "/boot/grub/grub.cfg", tmp_path).decode()
    assert "set timeout=0" in grub.splitlines()
    assert grub.count("menuentry") == 1
    found = remaster.grub_entry(grub)
    assert (found.kernel, found.initrds) == ("/linux", ["/initrd.gz"])
    assert found.args == "console=ttyS0 priority=critical --- quiet"

    # The text installer's initrd carries the preseed; the rest is as it was.
    data = read(out, "/initrd.gz", tmp_path)
    assert unpack_appended(data, files["initrd.gz"], tmp_path / "root") == {
        "preseed.cfg": PRESEED}
    assert read(out, "/gtk/initrd.gz", tmp_path) == files["gtk/initrd.gz"]
    assert read(out, "/linux", tmp_path) == b"kernel image"


def test_the_copy_keeps_the_boot_record_and_the_volume(mini_iso, tmp_path):
    iso, _ = mini_iso
    out = remaster.with_files(iso, {"preseed.cfg": PRESEED}, CMDLINE,
                              str(tmp_path / "out.iso"))

    def report(path):
        return subprocess.run(
            ["xorriso", "-indev", path, "-report_el_torito", "plain",
             "-pvd_info"], capture_output=True, text=True,
            check=True).stdout

    boot = [line for line in report(out).splitlines()
            if line.startswith(("El Torito img path", "El Torito img opts",
                                "Volume Id"))]
    assert boot == [line for line in report(iso).splitlines()
                    if line.startswith(("El Torito img path",
                                        "El Torito img opts", "Volume Id"))]
    assert "El Torito img path :   1  /isolinux.bin" in boot
    assert "Volume Id    : TEST-ISO" in boot


def test_the_script_is_never_on_a_command_line(mini_iso, tmp_path,
                                               monkeypatch):
    iso, _ = mini_iso
    argvs = []
    real = subprocess.run

    def recording(argv, *args, **kwargs):
        argvs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    remaster.with_files(iso, {"preseed.cfg": PRESEED}, CMDLINE,
                        str(tmp_path / "out.iso"))
    assert argvs and all(os.path.basename(a[0]) == "xorriso" for a in argvs)
    assert not [a for a in argvs for word in a if "hash" in word]
    # Nothing but the result is left beside it.
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["out.iso", "TEST-ISO.iso", "tree-TEST-ISO"])


def test_netinst_layout_relative_includes_and_absolute_kernels():
    """Debian's netinst CD: /isolinux/isolinux.cfg includes menu.cfg beside
    it; kernels are absolute; the graphical entry is the default."""
    files = {
        "/isolinux/isolinux.cfg": "include menu.cfg\ndefault vesamenu.c32\n",
        "/isolinux/menu.cfg": "menu include gtk.cfg\ninclude txt.cfg\n",
        "/isolinux/gtk.cfg": "default installgui\nlabel installgui\n"
                             "  kernel /install.amd/vmlinuz\n  append "
                             "vga=788 initrd=/install.amd/gtk/initrd.gz ---"
                             " quiet\n",
        "/isolinux/txt.cfg": "LABEL install\n  KERNEL /install.amd/vmlinuz\n"
                             "  INITRD /install.amd/initrd.gz\n"
                             "  APPEND vga=788 --- quiet\n",
    }
    entry = remaster.syslinux_entry(files.get, "/isolinux/isolinux.cfg")
    assert entry.kernel == "/install.amd/vmlinuz"
    assert entry.initrd_path() == "/install.amd/initrd.gz"
    assert entry.args == "--- quiet"
    assert remaster.syslinux_config(entry, CMDLINE).splitlines()[-1] == (
        "  append initrd=/install.amd/initrd.gz console=ttyS0 "
        "priority=critical --- quiet")


def test_without_an_install_label_the_default_one_is_booted():
    files = {"/syslinux.cfg": "default live\nlabel rescue\n  kernel vmlinuz\n"
                              "  append initrd=rescue.img\nlabel live\n"
                              "  linux vmlinuz\n  append initrd=a.img,b.img "
                              "boot=live\n"}
    entry = remaster.syslinux_entry(files.get, "/syslinux.cfg")
    assert entry.initrds == ["a.img", "b.img"]
    assert entry.initrd_path() == "/b.img"
    assert entry.args == "boot=live"
    assert "append initrd=a.img,b.img boot=live console=ttyS0" in \
        remaster.syslinux_config(entry, CMDLINE)


def test_grub_entry_keeps_its_commands_and_takes_the_first_bootable():
    text = ("menuentry \"Rescue\" --class x {\n  chainloader +1\n}\n"
            "menuentry Try {\n  linuxefi (cd0)/casper/vmlinuz quiet splash\n"
            "  initrdefi /casper/initrd\n}\n")
    entry = remaster.grub_entry(text)
    assert entry.commands == ("linuxefi", "initrdefi")
    assert entry.initrd_path() == "/casper/initrd"
    config = remaster.grub_config(entry, CMDLINE)
    assert "    linuxefi (cd0)/casper/vmlinuz quiet splash console=ttyS0 " \
        "priority=critical\n    initrdefi /casper/initrd\n" in config


def test_an_iso_without_a_boot_entry_is_refused(tmp_path):
    iso = make_iso(tmp_path, {"README": "no boot loader here"}, boot=False)
    out = tmp_path / "out.iso"
    with pytest.raises(errors.BuildError) as raised:
        remaster.with_files(iso, {"preseed.cfg": PRESEED}, CMDLINE, str(out))
    assert str(raised.value) == (
        "cannot boot the installer with the build's kernel arguments: the ISO "
        "has no "
        "ISOLINUX, SYSLINUX or GRUB boot entry with a kernel and an initrd")
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["TEST-ISO.iso", "tree-TEST-ISO"]


def test_an_entry_naming_a_missing_initrd_is_refused(tmp_path):
    iso = make_iso(tmp_path, {"isolinux.cfg": "label install\n kernel linux"
                              "\n append initrd=gone.gz\n", "linux": "k"})
    with pytest.raises(errors.BuildError) as raised:
        remaster.with_files(iso, {"preseed.cfg": PRESEED}, CMDLINE,
                            str(tmp_path / "out.iso"))
    assert str(raised.value) == ("the ISO's boot entry names the initrd "
                                 "/gone.gz, which it does not hold")

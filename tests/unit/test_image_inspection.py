"""Image bytes are inspected, never guessed: formats.inspect on real
qemu-img images, and the paths that hand a base image's bytes to qemu-img
(target conversion, the local guest's backing file, Glance uploads)."""
import os
import subprocess

import pytest
import requests_mock
from keystoneauth1 import session

from novaimagebuilder import errors
from novaimagebuilder.images import formats
from novaimagebuilder.images import glance
from novaimagebuilder.machines import local
from tests.unit import test_formats

MiB = 1024 ** 2
MARKER = b"HOST-FILE-MARKER-5f1c"


def _qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def host_file(tmp_path):
    """A file of this host that a hostile image names: the marker, 64 KiB of
    it."""
    path = tmp_path / "host-secret"
    path.write_bytes(MARKER * (64 * 1024 // len(MARKER)))
    return str(path)


def _backing_file(path, host_file):
    _qemu_img("create", "-f", "qcow2", "-b", host_file, "-F", "raw", path,
              "1M")
    return path


def _data_file(path, host_file):
    _qemu_img("create", "-f", "qcow2", "-o", "data_file=%s.data" % path,
              path, "1M")
    return path


def _flat_vmdk(path, host_file):
    """A VMDK descriptor whose one extent is the host file (what qemu-img
    opens when told nothing, or -f vmdk)."""
    with open(path, "w") as handle:
        handle.write('# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'
                     'parentCID=ffffffff\ncreateType="monolithicFlat"\n'
                     'RW 128 FLAT "%s" 0\nddb.adapterType = "ide"\n'
                     % host_file)
    return path


def _sparse_vmdk_naming(path, host_file):
    """A sparse VMDK whose embedded descriptor names the host file."""
    _qemu_img("create", "-f", "vmdk", path, "1M")
    with open(path, "r+b") as handle:
        handle.seek(512)
        text = handle.read(1024).split(b"\0")[0]
        extent = b'RW 2048 SPARSE "%s"' % os.path.basename(path).encode()
        assert extent in text
        handle.seek(512)
        handle.write(text.replace(extent, b'RW 2048 FLAT "%s" 0'
                                  % host_file.encode()))
    return path


def _whole_disk(path, host_file):
    """A raw disk with an MBR partition table (the inspector's "gpt")."""
    with open(path, "wb") as handle:
        handle.truncate(4 * MiB)
        handle.seek(446)  # one Linux partition from sector 2048
        handle.write(bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) +
                     (2048).to_bytes(4, "little") +
                     (6144).to_bytes(4, "little"))
        handle.seek(510)
        handle.write(b"\x55\xaa")
    return path


def _hybrid_iso(path, host_file):
    """A bootable ISO with a GPT in front (as installer ISOs are): the
    inspector finds both formats, and the ISO is what it is."""
    tree = os.path.dirname(path) + "/tree"
    os.makedirs(tree)
    with open(tree + "/file", "w") as handle:
        handle.write("hello")
    esp = os.path.dirname(path) + "/esp.img"
    with open(esp, "wb") as handle:
        handle.truncate(MiB)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", path, "-R",
                    "-append_partition", "2", "0xef", esp,
                    "-appended_part_as_gpt", "--protective-msdos-label",
                    tree], check=True, capture_output=True)
    return path


def _created(fmt, *options):
    def make(path, host_file):
        _qemu_img("create", "-f", fmt, *options, path, "4M")
        return path
    return make


@pytest.mark.parametrize("make, claimed, error", [
    (_backing_file, "raw", "claims raw but holds a qcow2 header with a "
     "backing file"),
    (_backing_file, "qcow2", "(qcow2) is refused: it has a backing file"),
    (_data_file, "qcow2", "(qcow2) is refused: it has an external data "
     "file"),
    (_flat_vmdk, "vmdk", "(vmdk) is refused: it has a failed descriptor "
     "check (Unsupported subformat)"),
    (_flat_vmdk, "raw", "claims raw but holds a vmdk header with a failed "
     "descriptor check (Unsupported subformat)"),
    (_sparse_vmdk_naming, "vmdk", "(vmdk) is refused: it has a failed "
     "descriptor check (Invalid extent filenames found)"),
    (_created("qcow2"), "raw", "claims raw but holds a qcow2 header"),
    (_created("vmdk"), "raw", "claims raw but holds a vmdk header"),
    (_created("raw"), "qcow2", "claims qcow2 but holds no qcow2 header"),
    (_created("qcow2"), "vmdk", "claims vmdk but holds a qcow2 header"),
    (_created("qcow2"), "ploop", "claims the format ploop, which cannot be "
     "inspected"),
], ids=["qcow2-backing-as-raw", "qcow2-backing", "qcow2-data-file",
        "vmdk-flat-extent", "vmdk-flat-extent-as-raw", "vmdk-sparse-extent",
        "qcow2-as-raw", "vmdk-as-raw", "raw-as-qcow2", "qcow2-as-vmdk",
        "unknown-format"])
def test_refused(tmp_path, host_file, make, claimed, error):
    path = make(str(tmp_path / "image"), host_file)
    with pytest.raises(errors.BuildError) as raised:
        formats.inspect(path, claimed, "base image B")
    assert str(raised.value) == "base image B " + error


@pytest.mark.parametrize("make, claimed", [
    (_created("qcow2"), "qcow2"),
    (_created("raw"), "raw"),
    (_whole_disk, "raw"),
    (_created("vmdk", "-o", "subformat=streamOptimized"), "vmdk"),
    (_created("vpc", "-o", "subformat=fixed"), "vpc"),  # footer only
    (_created("vpc", "-o", "subformat=fixed"), "vhd"),  # Glance's name
    (_created("vhdx"), "vhdx"),
    (_hybrid_iso, "iso"),
    (_backing_file, "aki"),  # kernels and ramdisks are no disk images
])
def test_accepted(tmp_path, host_file, make, claimed):
    assert formats.inspect(make(str(tmp_path / "image"), host_file),
                           claimed, "image") is None


def test_a_container_is_not_inspected(tmp_path, host_file):
    path = _backing_file(str(tmp_path / "image.ova"), host_file)
    formats.inspect(path, "vmdk", "image", container_format="ova")


def test_an_unreadable_image_is_one_line(tmp_path):
    with pytest.raises(errors.BuildError, match="^image cannot be read: No "
                       "such file or directory$"):
        formats.inspect(str(tmp_path / "gone"), "raw", "image")


def test_probing_qemu_img_would_copy_the_host_file(tmp_path, host_file):
    """Why: converting these images as qemu-img guesses (or as they claim)
    copies the host file into the output."""
    for make, fmt in ((_backing_file, "qcow2"), (_flat_vmdk, "vmdk")):
        evil = make(str(tmp_path / ("evil." + fmt)), host_file)
        out = str(tmp_path / ("out-%s.raw" % fmt))
        _qemu_img("convert", "-O", "raw", evil, out)
        with open(out, "rb") as handle:
            assert MARKER in handle.read()


def test_convert_refuses_before_qemu_img_runs(tmp_path, host_file):
    evil = _backing_file(str(tmp_path / "base"), host_file)
    out = str(tmp_path / "out.qcow2")
    with pytest.raises(errors.BuildError, match="^base image B claims raw "
                       "but holds a qcow2 header with a backing file$"):
        formats.convert(evil, "raw", out, formats.FORMATS["qcow2"],
                        what="base image B")
    assert not os.path.exists(out)


# -- through the builder: the formats and openstack targets -----------------


@pytest.mark.parametrize("target", ["qcow2", "vmdk", "ova", "openstack"])
def test_target_of_a_raw_base_holding_a_qcow2_header_is_refused(
        plugin_site, tmp_path, host_file, target):
    """A "raw" base image into which the guest wrote a qcow2 header whose
    backing file is a host file: the target build fails in one line and no
    file it wrote holds the host file's bytes."""
    from imgfac_nova import build
    from imgfac_nova import images
    from imgfac_nova import store
    builder = build.Builder(None, store.ImageStore(str(tmp_path / "store")))
    base = test_formats._base(builder, 4096)
    assert base.properties["format"] == "raw"
    os.unlink(base.data)
    _backing_file(base.data, host_file)
    job = builder.target_image(target, {}, base_id=base.identifier)
    assert job.wait(60)
    image = builder.store.get(job.image.identifier)
    assert image.status == images.FAILED
    assert image.error == ("base image %s claims raw but holds a qcow2 "
                           "header with a backing file" % base.identifier)
    assert image.data is None
    written = [os.path.join(top, name)
               for top, _, names in os.walk(tmp_path) for name in names]
    assert len(written) > 3
    for path in written:
        if path != host_file:
            with open(path, "rb") as handle:
                assert MARKER not in handle.read(), path


# -- the local guest's backing file, a Glance upload -------------------------


def test_local_guest_does_not_boot_a_disk_that_is_not_its_format(
        tmp_path, host_file, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    base = _backing_file(str(tmp_path / "base.body"), host_file)
    backend = local.LocalBackend(str(work), "tcg", image_format="raw",
                                 guest_format="raw")
    monkeypatch.setattr(local.qemu.VM, "start", lambda vm: pytest.fail(
        "a VM was started"))
    with pytest.raises(errors.BuildError) as raised:
        backend.boot_guest(base, "root", "ssh-ed25519 AAAA k")
    assert str(raised.value) == ("the disk to boot (%s) claims raw but holds "
                                 "a qcow2 header with a backing file" % base)
    assert os.listdir(work) == []


def test_glance_upload_refuses_before_creating_an_image(tmp_path, host_file):
    evil = _backing_file(str(tmp_path / "target.body"), host_file)
    with requests_mock.Mocker() as mocker:
        with pytest.raises(errors.BuildError, match="^the upload of pushed "
                           "claims raw but holds a qcow2 header with a "
                           "backing file$"):
            glance.upload(glance.client(session.Session(),
                                        endpoint="http://glance.test"),
                          evil, "pushed", "raw", "bare")
        assert mocker.call_count == 0

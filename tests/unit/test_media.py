import hashlib
import os
import threading

import pytest

from imgfac_nova.template_model import Checksum, Install
from novaimagebuilder import errors
from novaimagebuilder.installer import media
from tests.unit.httpserver import StaticServer


#: The start of an ISO 9660 image: its first volume descriptor in sector 16.
ISO = b"\0" * 16 * 2048 + b"\1CD001\1" + b"\0" * 2041


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "www"
    (root / "tree" / "images" / "pxeboot").mkdir(parents=True)
    (root / "tree" / "images" / "pxeboot" / "vmlinuz").write_bytes(b"K" * 1000)
    (root / "tree" / "images" / "pxeboot" / "initrd.img").write_bytes(b"R" * 99)
    (root / "disc.iso").write_bytes(ISO)
    (root / "disc.txt").write_bytes(b"not an ISO\n" * 4000)
    digest = hashlib.sha256(ISO).hexdigest()
    (root / "SHA256SUMS").write_text("%s *disc.iso\n%s  other.iso\n"
                                     % (digest, "0" * 64))
    with StaticServer(root) as server:
        yield server, root, digest


def _install(**fields):
    return Install(**fields)


def test_url_install_finds_kernel_and_caches_by_content(tree, tmp_path):
    server, root, _ = tree
    cache = media.MediaCache(str(tmp_path / "cache"))
    install = _install(type="url", url=server.url("tree/"))
    first = media.fetch(install, cache)
    assert first.kind == "kernel"
    with open(first.files["kernel"], "rb") as handle:
        assert handle.read() == b"K" * 1000
    assert first.sha256["kernel"] == hashlib.sha256(b"K" * 1000).hexdigest()
    assert os.path.basename(first.files["ramdisk"]) == first.sha256["ramdisk"]
    gets = [r for r in server.requests if r[0] == "GET"]
    assert len(gets) == 2
    # Unchanged media is revalidated, not downloaded again.
    server.requests.clear()
    second = media.fetch(install, cache)
    assert second.files == first.files
    assert all(r[0] == "HEAD" or r[0] == "GET" for r in server.requests)
    assert os.listdir(tmp_path / "cache").count(first.sha256["kernel"]) == 1
    # Changed media is fetched again and cached under its new digest.
    (root / "tree" / "images" / "pxeboot" / "vmlinuz").write_bytes(b"k2")
    os.utime(root / "tree" / "images" / "pxeboot" / "vmlinuz", (1, 2e9))
    third = media.fetch(install, cache)
    assert third.sha256["kernel"] == hashlib.sha256(b"k2").hexdigest()


def test_conditional_get_answers_304(tree, tmp_path):
    server, _, _ = tree
    cache = media.MediaCache(str(tmp_path / "cache"))
    url = server.url("disc.iso")
    path, digest = cache.fetch(url)
    server.requests.clear()
    assert cache.fetch(url) == (path, digest)
    assert server.requests == [("GET", "/disc.iso")]


def test_kernel_parameters_override_the_tree(tree, tmp_path):
    server, _, _ = tree
    cache = media.MediaCache(str(tmp_path / "c"))
    found = media.fetch(_install(type="url", url=server.url("nowhere/")),
                        cache, kernel_url=server.url("disc.iso"),
                        ramdisk_url=server.url("SHA256SUMS"))
    assert found.sha256["kernel"] == hashlib.sha256(ISO).hexdigest()


def test_no_kernel_in_tree_is_one_line(tree, tmp_path):
    server, _, _ = tree
    with pytest.raises(errors.BuildError, match="no installer kernel found "
                       "under .*give the install_kernel"):
        media.fetch(_install(type="url", url=server.url("empty/")),
                    media.MediaCache(str(tmp_path / "c")))


@pytest.mark.parametrize("checksum_value", ["digest", "url"])
def test_iso_checksum_verified(tree, tmp_path, checksum_value):
    server, _, digest = tree
    value = digest if checksum_value == "digest" else server.url("SHA256SUMS")
    install = _install(type="iso", iso=server.url("disc.iso"),
                       checksum=Checksum("sha256sum", value))
    found = media.fetch(install, media.MediaCache(str(tmp_path / "c")))
    assert found.kind == "iso" and found.sha256["iso"] == digest


def test_iso_checksum_mismatch(tree, tmp_path):
    server, _, _ = tree
    install = _install(type="iso", iso=server.url("disc.iso"),
                       checksum=Checksum("md5sum", "0" * 32))
    with pytest.raises(errors.BuildError, match="the ISO's md5sum is .* but "
                       "the template says 0000"):
        media.fetch(install, media.MediaCache(str(tmp_path / "c")))


def test_an_iso_that_is_not_one_is_refused_in_one_line(tree, tmp_path):
    server, _, _ = tree
    install = _install(type="iso", iso=server.url("disc.txt"))
    with pytest.raises(errors.BuildError) as raised:
        media.fetch(install, media.MediaCache(str(tmp_path / "c")))
    assert str(raised.value) == "the install ISO %s is not an ISO 9660 " \
        "image" % server.url("disc.txt")


def test_checksum_file_without_the_iso(tree, tmp_path):
    server, root, _ = tree
    (root / "SHA256SUMS").write_text("%s  other.iso\n" % ("1" * 64))
    install = _install(type="iso", iso=server.url("disc.iso"),
                       checksum=Checksum("sha256sum",
                                         server.url("SHA256SUMS")))
    with pytest.raises(errors.BuildError, match="does not list disc.iso"):
        media.fetch(install, media.MediaCache(str(tmp_path / "c")))


def test_http_errors_are_one_line(tree, tmp_path):
    server, _, _ = tree
    cache = media.MediaCache(str(tmp_path / "c"))
    with pytest.raises(errors.BuildError,
                       match=r"cannot download .*missing.iso: HTTP 404"):
        cache.fetch(server.url("missing.iso"))
    with pytest.raises(errors.BuildError, match="cannot download"):
        cache.fetch("http://127.0.0.1:1/x.iso")
    assert [n for n in os.listdir(tmp_path / "c") if n.startswith(".down")] \
        == []


def test_cancel_leaves_no_partial_file(tree, tmp_path):
    server, _, _ = tree
    cancel = threading.Event()
    cancel.set()
    cache = media.MediaCache(str(tmp_path / "c"))
    with pytest.raises(errors.Cancelled):
        cache.fetch(server.url("disc.iso"), cancel)
    assert os.listdir(tmp_path / "c") == []


def test_a_download_is_written_to_a_file_named_for_its_process(tmp_path):
    import io
    import socket
    cache = media.MediaCache(str(tmp_path / "c"))
    seen = []

    class Response(io.BytesIO):
        def read(self, size=-1):
            seen.extend(n for n in os.listdir(cache.path)
                        if n.startswith("."))
            return super().read(size)

    cache._store(Response(b"data"), "http://example.invalid/x", None)
    prefix = ".download-%s:%d-" % (socket.gethostname(), os.getpid())
    assert seen and all(name.startswith(prefix) for name in seen)
    # A partial file is the sweep's when its process is gone; it says whose.
    dead = os.path.join(cache.path, ".download-%s:1234567-abcd1234"
                        % socket.gethostname())
    open(dead, "w").close()
    legacy = os.path.join(cache.path, ".download-k2j3h4g5")
    open(legacy, "w").close()
    assert sorted((p.id, p.owner, p.build) for p in cache.partial()) == \
        sorted([(dead, "%s:1234567" % socket.gethostname(), None),
                (legacy, None, None)])

"""Install media: the installer kernel and ramdisk (URL installs) or the ISO.

Downloads are cached by content (sha256) under a cache directory; a URL seen
before is revalidated with a conditional GET, so unchanged media is never
downloaded twice. An ISO checksum given by the template is verified.

The cache is private (see :mod:`private`) and its URL index keeps URLs
without their credentials (:mod:`scrub`): a URL differing only in them is
the same entry, revalidated all the same.

A download (and the URL index) is written to a partial file named for the
process writing it, ``.download-<host>:<pid>-*``, and renamed into place when
complete; :meth:`MediaCache.partial` lists those a killed process left, for
the sweep.
"""
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from novaimagebuilder import errors
from novaimagebuilder import netguard
from novaimagebuilder import private
from novaimagebuilder import scrub
from novaimagebuilder import sweep

LOG = logging.getLogger(__name__)

#: Where installers keep their kernel and ramdisk, relative to the install URL.
KERNEL_CANDIDATES = (
    ("vmlinuz", "initrd.img"),
    ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("linux", "initrd.gz"),
    ("current/images/netboot/debian-installer/amd64/linux",
     "current/images/netboot/debian-installer/amd64/initrd.gz"),
    ("install/netboot/ubuntu-installer/amd64/linux",
     "install/netboot/ubuntu-installer/amd64/initrd.gz"),
)
_CHUNK = 1024 * 1024
#: Prefixes of the cache's partial files.
PARTIAL_PREFIXES = (".download-", ".index-")


def _partial(prefix):
    """The mkstemp prefix of a partial file this process writes."""
    return "%s%s-" % (prefix, sweep.this_process())


@dataclasses.dataclass
class Media:
    """Local files of the install media, each with its sha256."""

    kind: str  # "kernel" (direct kernel boot) or "iso"
    files: dict  # role ("kernel", "ramdisk", "iso") -> path
    sha256: dict  # role -> hex digest
    source: str  # where it came from, for messages


class MediaCache:
    """Files by sha256 under ``path``, with what each URL last served."""

    def __init__(self, path, url_check=None):
        """``url_check(url, what)`` (e.g. a netguard.AddressPolicy's check)
        vets every URL opened and every redirect; None trusts them all."""
        self.path = path
        self.url_check = url_check
        private.directory(path)
        self._index_path = os.path.join(path, "urls.json")
        index = self._index()
        if any(scrub.scrub(url) != url for url in index):
            self._write(index)  # an index from before URLs were scrubbed

    def _index(self):
        try:
            with open(self._index_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def _remember(self, url, entry):
        index = self._index()
        index[url] = entry
        self._write(index)

    def _write(self, index):
        index = {scrub.scrub(url): entry for url, entry in index.items()}
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=_partial(".index-"))
        with os.fdopen(fd, "w") as handle:
            json.dump(index, handle, indent=1)
        os.replace(tmp, self._index_path)

    def file(self, digest):
        return os.path.join(self.path, digest)

    def partial(self):
        """The partial files in the cache, as sweep Leftovers ("partial
        download", owned by the "host:pid" that writes it; None when its name
        does not say)."""
        from novaimagebuilder import sweep
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            prefix = next((p for p in PARTIAL_PREFIXES
                           if name.startswith(p)), None)
            if prefix is None:
                continue
            owner = name[len(prefix):].rpartition("-")[0]
            path = os.path.join(self.path, name)
            found.append(sweep.Leftover(None, "partial download", path, path,
                                        owner=owner if ":" in owner else None))
        return found

    def fetch(self, url, cancel=None):
        """The cached path and sha256 of what ``url`` serves now."""
        known = self._index().get(scrub.scrub(url))
        request = urllib.request.Request(url)
        if known and os.path.exists(self.file(known["sha256"])):
            if known.get("etag"):
                request.add_header("If-None-Match", known["etag"])
            if known.get("last_modified"):
                request.add_header("If-Modified-Since", known["last_modified"])
        try:
            response = netguard.urlopen(request, 60, self.url_check)
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and known:
                return self.file(known["sha256"]), known["sha256"]
            raise errors.BuildError("cannot download %s: HTTP %d %s"
                                    % (url, exc.code, exc.reason)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise errors.BuildError("cannot download %s: %s"
                                    % (url, reason)) from None
        with response:
            digest = self._store(response, url, cancel)
            headers = response.headers
            self._remember(url, {"sha256": digest,
                                 "etag": headers.get("ETag"),
                                 "last_modified": headers.get("Last-Modified")})
        return self.file(digest), digest

    def _store(self, response, url, cancel):
        sha = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.path,
                                   prefix=_partial(".download-"))
        try:
            with os.fdopen(fd, "wb") as handle:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise errors.Cancelled()
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    sha.update(chunk)
                    handle.write(chunk)
            digest = sha.hexdigest()
            os.replace(tmp, self.file(digest))
            LOG.info("Downloaded %s (sha256 %s)", url, digest)
            return digest
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _exists(url, check):
    request = urllib.request.Request(url, method="HEAD")
    try:
        with netguard.urlopen(request, 30, check):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _join(base, relative):
    return urllib.parse.urljoin(base.rstrip("/") + "/", relative)


_DIGEST_LENGTHS = {"md5sum": 32, "sha1sum": 40, "sha256sum": 64}


def _expected_digest(checksum, iso_url, check):
    """The digest a template's checksum element stands for: the digest itself,
    or (as Oz does) the URL of a checksum file listing the ISO's name."""
    kind, value = checksum
    value = value.strip()
    if len(value) == _DIGEST_LENGTHS[kind] and all(
            c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        with netguard.urlopen(value, 60, check) as response:
            listing = response.read(1024 * 1024).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise errors.BuildError("cannot download the checksum file %s: %s"
                                % (value, getattr(exc, "reason", exc))) from None
    name = os.path.basename(urllib.parse.urlparse(iso_url).path)
    for line in listing.splitlines():
        fields = line.replace("*", " ").split()
        if len(fields) >= 2 and fields[-1] == name:
            return fields[0].lower()
        if line.startswith("%s (%s) = " % (kind[:-3].upper(), name)):
            return line.rsplit(" ", 1)[1].lower()
    raise errors.BuildError("the checksum file %s does not list %s"
                            % (value, name))


def _verify(path, checksum, iso_url, check):
    kind = checksum.type
    expected = _expected_digest(checksum, iso_url, check)
    digest = hashlib.new(kind[:-3])
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise errors.BuildError("the ISO's %s is %s, but the template says %s"
                                % (kind, digest.hexdigest(), expected))


#: Where an ISO 9660 image says what it is: the standard identifier of its
#: first volume descriptor (sector 16 of 2048 bytes, after the type byte).
_ISO_MAGIC_OFFSET, _ISO_MAGIC = 16 * 2048 + 1, b"CD001"


def _check_iso(path, iso_url):
    with open(path, "rb") as handle:
        handle.seek(_ISO_MAGIC_OFFSET)
        if handle.read(len(_ISO_MAGIC)) != _ISO_MAGIC:
            raise errors.BuildError("the install ISO %s is not an ISO 9660 "
                                    "image" % iso_url)


def fetch(install, cache, kernel_url=None, ramdisk_url=None, cancel=None):
    """Fetch the media of a template's ``<install>`` into ``cache``.

    ``kernel_url``/``ramdisk_url`` (the install_kernel / install_ramdisk
    parameters) override where the kernel and ramdisk are found.
    """
    if install.type == "iso":
        path, digest = cache.fetch(install.iso, cancel)
        if install.checksum:
            _verify(path, install.checksum, install.iso, cache.url_check)
        _check_iso(path, install.iso)
        return Media("iso", {"iso": path}, {"iso": digest}, install.iso)
    if not (kernel_url and ramdisk_url):
        for kernel, ramdisk in KERNEL_CANDIDATES:
            if _exists(_join(install.url, kernel), cache.url_check):
                kernel_url = kernel_url or _join(install.url, kernel)
                ramdisk_url = ramdisk_url or _join(install.url, ramdisk)
                break
        else:
            raise errors.BuildError(
                "no installer kernel found under %s (looked for %s); give the "
                "install_kernel and install_ramdisk parameters"
                % (install.url, ", ".join(k for k, _ in KERNEL_CANDIDATES)))
    files, sums = {}, {}
    for role, url in (("kernel", kernel_url), ("ramdisk", ramdisk_url)):
        files[role], sums[role] = cache.fetch(url, cancel)
    return Media("kernel", files, sums, install.url)

"""The JEOS cache: installed systems kept for builds that would install the
same system again.

A JEOS (the installed OS before customization) is determined by its key: a
digest of the template's ``<os>`` section, the install script the operator
gave (a generated one is determined by the rest), the install media digests,
the parameters that shape the install (:data:`KEY_PARAMETERS`), and the
backend's and plugin's own say (:meth:`Backend.jeos_scope`, the product
version). A build whose key has an entry skips the media upload, the
installer and the JEOS capture; its customization guest boots from the entry.

What keeps one build out of another's guest: the root password and the
operator's ``ssh_public_key`` are part of the key (another password is
another entry), and a build's own SSH key never reaches the JEOS (it is
given to the customization guest at boot). The key is stretched
(PBKDF2-SHA256) because its material holds the root password.

Caches (:class:`Cache`) are kept by the backends: Glance images in Nova,
qcow2 files in a directory locally. Entries expire by age and count.
"""
import abc
import dataclasses
import hashlib
import json
import time

#: Build parameters that change what the installer puts on the disk.
KEY_PARAMETERS = ("install_script", "default_user", "ssh_public_key",
                  "install_disk", "disk_size", "kernel_args")
#: And those that do only when the build generates its install script (the
#: installer's mirror proxy, kept in the installed system when it persists).
GENERATED_SCRIPT_PARAMETERS = ("http_proxy", "https_proxy", "proxy_persist")
#: PBKDF2 rounds of the key: a fraction of a second per build.
KEY_ROUNDS = 100_000
_SALT = b"imgfac-nova JEOS cache key"


def key(template, parameters, media_sha256, scope):
    """The cache key (64 hex digits) of the JEOS a build installs."""
    material = {
        "os": dataclasses.asdict(template.os),
        "parameters": {name: parameters.get(name) for name in KEY_PARAMETERS
                       + (() if parameters.get("install_script")
                          else GENERATED_SCRIPT_PARAMETERS)},
        "media": dict(media_sha256),
        "scope": dict(scope),
    }
    encoded = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.pbkdf2_hmac("sha256", encoded, _SALT, KEY_ROUNDS).hex()


def describe(template):
    """What a JEOS of ``template`` holds, for listings: "Debian 12 x86_64"."""
    return "%s %s %s" % (template.os.name, template.os.version,
                         template.os.arch)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached JEOS: the backend's ``id`` of it (Glance image id, file
    path), what it holds, when it was stored (epoch seconds) and by which
    build."""

    key: str
    id: str
    name: str
    created: float
    build: str | None = None
    size: int | None = None


@dataclasses.dataclass(frozen=True)
class Policy:
    """Whether builds use the cache, and when entries expire: older than
    ``max_age`` seconds (0: never) or beyond the ``max_entries`` newest."""

    max_age: int = 30 * 86400
    max_entries: int = 10

    def expired(self, entries, now=None, keep=()):
        """The entries to remove, oldest first; ids in ``keep`` stay."""
        now = time.time() if now is None else now
        newest_first = sorted(entries, key=lambda e: e.created, reverse=True)
        gone = [entry for index, entry in enumerate(newest_first)
                if index >= self.max_entries or (
                    self.max_age and now - entry.created > self.max_age)]
        return [entry for entry in reversed(gone) if entry.id not in keep]

    def usable(self, entry, now=None):
        now = time.time() if now is None else now
        return not self.max_age or now - entry.created <= self.max_age


class Cache(abc.ABC):
    """Where a backend keeps its JEOS entries."""

    #: Where the cache is, for messages ("Glance", a directory).
    where = "cache"

    @abc.abstractmethod
    def entries(self):
        """The entries, as :class:`Entry` objects."""

    @abc.abstractmethod
    def find(self, key):
        """The usable entry for ``key``, or None. An entry that is broken
        (its image gone, unreadable or not active) is removed and None is
        returned, so the build installs afresh."""

    @abc.abstractmethod
    def add(self, captured, key, name, build):
        """Make the captured JEOS ``captured`` the entry for ``key``; returns
        the Entry. From then on the build must not discard it."""

    @abc.abstractmethod
    def remove(self, entry):
        """Remove one entry (gone already is fine)."""

    def prune(self, policy, keep=(), log=None):
        """Remove the entries ``policy`` says have expired; returns them."""
        gone = policy.expired(self.entries(), keep=keep)
        for entry in gone:
            self.remove(entry)
            if log is not None:
                log.info("Removed the expired JEOS cache entry %s (%s)",
                         entry.id, entry.name)
        return gone

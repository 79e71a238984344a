"""Checking the SSH host key a guest offers.

A key the build gave the guest (``build_keys``, see :mod:`hostkeys`) is
accepted at once; with ``build_only`` any other key fails the connection at
once (``HostKeyMismatch`` naming both fingerprints). Otherwise the host-key
policy applies to the keys the guest printed on its console
(:func:`host_keys_from_console`): with "console" (the default) a server
offering another key is refused, and when the console shows none for the
grace period the first key is accepted with a warning; with "strict" a
console without keys fails the connection then (``HostKeyUnverified``);
with "any" nothing is checked (warned).
"""
import hashlib
import re

import paramiko

from novaimagebuilder.guest import hostkeys
from novaimagebuilder.guest import ssh_errors

#: Host-key policies: check against the console (accept the first key with
#: a warning when it shows none), insist on console keys, or check nothing.
HOST_KEY_POLICIES = ("console", "strict", "any")

_CONSOLE_MARKER = re.compile(
    r"-----(BEGIN|END) SSH HOST KEY (KEYS|FINGERPRINTS)-----")
_KEY_LINE = re.compile(
    r"((?:ssh|ecdsa|sk|rsa)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)")
_FINGERPRINT = re.compile(
    r"(SHA256:[A-Za-z0-9+/]{43}|(?:MD5:)?(?:[0-9a-fA-F]{2}:){15}[0-9a-fA-F]{2})")


def host_keys_from_console(text):
    """Host keys and fingerprints a guest printed on its console.

    Reads the blocks between "-----BEGIN SSH HOST KEY KEYS-----" /
    "-----END SSH HOST KEY KEYS-----" (lines "TYPE BASE64 [comment]") and
    "-----BEGIN SSH HOST KEY FINGERPRINTS-----" / "...END..." (lines as
    ``ssh-keygen -l`` prints them: "256 SHA256:... comment (ED25519)").
    A prefix before the markers (cloud-init writes "ec2: ") is ignored.
    When a block appears several times the last one counts (latest boot).

    Returns a list of "TYPE BASE64" and "SHA256:..." / "MD5:aa:bb:..."
    strings, suitable for ``SSHGuest(host_keys=...)``; an empty
    list when the console shows none.
    """
    blocks = {}
    current = None
    for raw in text.splitlines():
        line = raw.replace("\r", "")
        marker = _CONSOLE_MARKER.search(line)
        if current is not None:
            # A key file without a final newline leaves the END marker on
            # its last line.
            _console_entry(current, line[:marker.start()] if marker else line)
        if marker:
            edge, kind = marker.groups()
            current = (kind, []) if edge == "BEGIN" else None
            if edge == "BEGIN":
                blocks[kind] = current[1]
    return blocks.get("KEYS", []) + blocks.get("FINGERPRINTS", [])


def _console_entry(block, line):
    """Add the key or fingerprint on ``line`` (if any) to ``block``."""
    kind, entries = block
    if kind == "KEYS":
        match = _KEY_LINE.search(line)
        if match:
            entries.append(f"{match.group(1)} {match.group(2)}")
    else:
        match = _FINGERPRINT.search(line)
        if match:
            entries.append(_normal_fingerprint(match.group(1)))


def _normal_fingerprint(text):
    if text.startswith("SHA256:"):
        return text
    return "MD5:" + text.removeprefix("MD5:").lower()


def fingerprint(key):
    """OpenSSH's SHA256 fingerprint of a paramiko key: "SHA256:...". """
    return hostkeys.blob_fingerprint(key.asbytes())


def _identities(key):
    """Every way a key may be written in an expected-keys list."""
    md5 = hashlib.md5(key.asbytes(), usedforsecurity=False).hexdigest()
    return {f"{key.get_name()} {key.get_base64()}", fingerprint(key),
            "MD5:" + ":".join(md5[i:i + 2] for i in range(0, len(md5), 2))}


def expected_identity(entry):
    """An expected key given as a paramiko key, key line or fingerprint."""
    if isinstance(entry, paramiko.PKey):
        return f"{entry.get_name()} {entry.get_base64()}"
    entry = entry.strip()
    match = _KEY_LINE.match(entry)
    if match:
        return f"{match.group(1)} {match.group(2)}"
    if _FINGERPRINT.fullmatch(entry):
        return _normal_fingerprint(entry)
    raise ValueError(f"not an SSH host key or fingerprint: {entry[:60]!r}")


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Checks the guest's key as the module text says: ``build_keys`` (key
    lines) first, then, unless ``build_only``, ``expected`` (the console's)
    as ``policy`` says; ``fallback``: policy "console" may accept an
    unverified key now. Records what it accepted in ``accepted``."""

    def __init__(self, address, expected, logger, policy="console",
                 build_keys=frozenset(), build_only=False, fallback=True,
                 waited=0):
        self.address = address
        self.expected = expected
        self.logger = logger
        self.policy = policy
        self.build_keys = build_keys
        self.build_only = build_only
        self.fallback = fallback
        self.waited = waited
        #: Where ``build_keys`` come from, for the mismatch message.
        self.origin = "the build gave the guest"
        self.accepted = None

    def missing_host_key(self, client, hostname, key):
        shown = f"{key.get_name()} {fingerprint(key)}"
        found = {"policy": self.policy, "fingerprint": fingerprint(key),
                 "key_type": key.get_name()}
        if self.build_keys and _identities(key) & self.build_keys:
            self.logger.info("SSH host key of %s is the one the build gave "
                             "it: %s", self.address, shown)
            self.accepted = dict(found, checked=True, source="build")
            return
        if self.build_only:
            raise ssh_errors.HostKeyMismatch(
                f"SSH host key of {self.address} is not the one "
                f"{self.origin}: the server offered {shown}, expected "
                + ", ".join(sorted(hostkeys.line_fingerprint(k)
                                   for k in self.build_keys)))
        if self.policy == "any":
            self.logger.warning("Not checking the SSH host key of %s: %s "
                                "(ssh_host_key_policy any)", self.address,
                                shown)
            self.accepted = dict(found, checked=False,
                                 warning="host key not checked "
                                 "(ssh_host_key_policy any)")
            return
        if not self.expected:
            if self.policy == "strict":
                raise ssh_errors.HostKeyUnverified(
                    f"ssh_host_key_policy is strict and the guest's console "
                    f"shows no SSH host keys: refusing the unverified key of "
                    f"{self.address} ({shown})")
            if not self.fallback:
                raise ssh_errors.KeysNotShownYet(
                    f"the guest's console shows no SSH host keys yet to check "
                    f"the key of {self.address} ({shown}) against")
            warning = (f"the console showed no SSH host keys within "
                       f"{self.waited:g} s; accepted the first key offered")
            self.logger.warning("Accepting SSH host key of %s: %s (%s)",
                                self.address, shown, warning)
            self.accepted = dict(found, checked=False, warning=warning)
            return
        if _identities(key) & self.expected:
            self.logger.info("SSH host key of %s matches the expected key: %s",
                             self.address, shown)
            self.accepted = dict(found, checked=True, source="console")
            return
        raise ssh_errors.HostKeyMismatch(
            f"SSH host key of {self.address} does not match the expected "
            f"keys: the server offered {shown}, expected "
            + ", ".join(sorted(_short(e) for e in self.expected)))


def _short(identity):
    """A key line shortened for messages; fingerprints stay whole."""
    if " " in identity:
        kind, data = identity.split(" ", 1)
        return f"{kind} {data[:12]}..."
    return identity

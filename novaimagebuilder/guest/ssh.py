"""SSH access to a booted guest: run commands, upload files (paramiko).

``SSHGuest`` logs in with a private key held in memory (never written to
disk, logs or command lines), puts ``command_prefix`` (e.g. ``sudo``) in
front of privileged commands, streams command output line by line to a
logger and turns failures into one-line exceptions.

Host keys: a key the build gave the guest (``build_keys``, see
:mod:`hostkeys`) is accepted at once; with ``build_only`` any other key
fails the connection at once (``HostKeyMismatch`` naming both
fingerprints). Otherwise ``host_key_policy`` applies to the keys the guest
printed on its console (``host_keys_from_console``): with "console" (the
default) a server offering another key is refused, and when the console
shows none for ``key_grace`` seconds the first key is accepted with a
warning; with "strict" a console without keys fails the connection then
(``HostKeyUnverified``); with "any" nothing is checked (warned). Once a key
is accepted, a reconnection must offer the same. ``SSHGuest.host_key`` says
what was accepted and how.

Jump host: with ``jump`` (a :class:`JumpHost`) the connection to the guest
is a direct-tcpip channel through the jump host's SSH server, for the wait,
every command and every upload; ``SSHGuest.close()`` closes it too.
"""

import codecs
import dataclasses
import hashlib
import io
import ipaddress
import logging
import re
import secrets
import shlex
import socket
import threading
import time

import paramiko

from novaimagebuilder import errors
from novaimagebuilder.guest import hostkeys
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: How many output lines a CommandFailed keeps.
KEEP_LINES = 20

#: What a connection attempt to a booting guest may raise and be retried:
#: refused or reset connections, a banner cut short (EOFError), SSH errors.
RETRYABLE = (OSError, EOFError, paramiko.SSHException)
#: The longest pause between two SSH attempts while a guest boots (seconds):
#: its SSH server is noticed this soon after it starts.
SSH_RETRY_WITHIN = 2.0
#: How long a reconnected guest connection tries to bind a forward's port
#: again while the lost connection's sshd still holds it (seconds).
FORWARD_AGAIN_WITHIN = 30.0


class SSHError(errors.BuildError):
    """Something went wrong talking to the guest over SSH."""


class SSHTimeout(SSHError, errors.WaitTimeout):
    """The guest's SSH server did not become reachable in time."""


class SSHAuthError(SSHError):
    """The guest's SSH server keeps refusing our key."""


class HostKeyMismatch(SSHError):
    """The guest offered a host key other than the expected ones."""


class HostKeyUnverified(SSHError):
    """Policy "strict": the guest's console shows no host keys to check
    its key against."""


class _KeysNotShownYet(HostKeyUnverified):
    """Policy "console": no keys on the console yet; retried until the
    grace period ends, then the first key is accepted."""


class JumpHostError(SSHError):
    """The jump host refused us or its host key (not retried)."""


#: Host-key policies: check against the console (accept the first key with
#: a warning when it shows none), insist on console keys, or check nothing.
HOST_KEY_POLICIES = ("console", "strict", "any")


class CommandTimeout(SSHError):
    """A command did not finish in time."""


class CommandFailed(SSHError):
    """A command exited with a non-zero status.

    ``name`` labels the command, ``status`` is its exit status and
    ``last_lines`` the end of its output; str() is one line naming all
    three, e.g. "command 'install packages' exited with status 100:
    E: Unable to locate package nosuchpkg".
    """

    _ERROR_LINE = re.compile(
        r"^(E:|Error|error|ERROR|fatal|FATAL|No match for argument|"
        r"Problem|No provider of|.*: (command )?not found$|.*No such file)")

    def __init__(self, name, status, last_lines):
        self.name = name
        self.status = status
        self.last_lines = list(last_lines)
        super().__init__(str(self))

    @property
    def reason(self):
        """The output line that best explains the failure ('' if none)."""
        lines = [line.strip() for line in self.last_lines if line.strip()]
        errors = [line for line in lines if self._ERROR_LINE.match(line)]
        return (errors or lines or [""])[-1]

    def __str__(self):
        text = f"command '{self.name}' exited with status {self.status}"
        return f"{text}: {self.reason}" if self.reason else text


# ---------------------------------------------------------------- host keys

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


def _expected_identity(entry):
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


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
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
            raise HostKeyMismatch(
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
                raise HostKeyUnverified(
                    f"ssh_host_key_policy is strict and the guest's console "
                    f"shows no SSH host keys: refusing the unverified key of "
                    f"{self.address} ({shown})")
            if not self.fallback:
                raise _KeysNotShownYet(
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
        raise HostKeyMismatch(
            f"SSH host key of {self.address} does not match the expected "
            f"keys: the server offered {shown}, expected "
            + ", ".join(sorted(_short(e) for e in self.expected)))


def _short(identity):
    """A key line shortened for messages; fingerprints stay whole."""
    if " " in identity:
        kind, data = identity.split(" ", 1)
        return f"{kind} {data[:12]}..."
    return identity


# ---------------------------------------------------------------- addresses

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*\.?")


def check_host(text, what="ssh_host"):
    """A host name or IP address (IPv6 with or without brackets), without
    the brackets; ValueError with a one-line reason otherwise."""
    host = (text or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{what} {text!r} is not an IPv6 address in "
                             "brackets") from None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise ValueError(f"{what} {text!r} is not a host name or IP address")
    return host


def host_port(host, port):
    """"host:port", the host bracketed when it is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_jump_host(text):
    """``[user@]host[:port]`` (IPv6 in brackets: ``user@[2001:db8::1]:2222``)
    -> (user or None, host, port); ValueError with a one-line reason."""
    text = (text or "").strip()
    user, at, rest = text.rpartition("@")
    if at and not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", user):
        raise ValueError(f"ssh_jump_host {text!r}: {user!r} is not a user "
                         "name")
    port = 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        host = f"[{host}]"
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"ssh_jump_host {text!r} is not "
                                 "[user@]host[:port]")
            port = tail[1:]
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host = rest
    if not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"ssh_jump_host {text!r}: {str(port)!r} is not a "
                         "TCP port")
    port = int(port)
    return user or None, check_host(host, "ssh_jump_host"), port


def load_private_key(text, what="ssh_jump_key"):
    """A paramiko private key from OpenSSH/PEM text; ValueError naming the
    problem in one line (never the key)."""
    if not (text or "").strip():
        raise ValueError(f"{what} is empty")
    problem = "not a private key paramiko can read (OpenSSH or PEM: " \
        "Ed25519, ECDSA, RSA)"
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise ValueError(f"{what} is encrypted with a passphrase; load "
                             "it into an SSH agent and use ssh_jump_agent")\
                from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise ValueError(f"{what} is {problem}")


def known_hosts(text, what="ssh_jump_known_hosts"):
    """paramiko HostKeys from known_hosts text (hashed names work);
    ValueError when it holds no usable line."""
    keys = paramiko.HostKeys()
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            raise ValueError(f"{what}:{number}: not a known_hosts line "
                             f"({exc})") from None
        if entry is None:
            raise ValueError(f"{what}:{number}: not a known_hosts line")
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    if not keys.keys():
        raise ValueError(f"{what} holds no host keys")
    return keys


# ---------------------------------------------------------------- jump host

@dataclasses.dataclass
class JumpHost:
    """An SSH server through which the guest is reached (``ssh -J``).

    ``pkey`` is the private key to log in with; None uses the keys of the
    SSH agent (``SSH_AUTH_SOCK``). ``host_keys`` (paramiko HostKeys, e.g.
    from :func:`known_hosts`) are the keys the jump host may offer; without
    them its key is accepted with a warning. One SSH connection to the jump
    host carries every tunnel to the guest; ``close()`` ends it.
    """

    host: str
    port: int = 22
    username: str = "root"
    pkey: object = None
    host_keys: object = None
    log: object = None
    connect_timeout: float = 10.0

    def __post_init__(self):
        self.logger = self.log or LOG
        self._client = None

    @property
    def address(self):
        return f"{self.username}@{host_port(self.host, self.port)}"

    def _connect(self):
        client = paramiko.SSHClient()
        if self.host_keys is not None:
            for name, keys in self.host_keys.items():
                for kind, key in keys.items():
                    client.get_host_keys().add(name, kind, key)
            client.set_missing_host_key_policy(_JumpKeyRefused(self.address))
        else:
            client.set_missing_host_key_policy(_JumpKeyWarned(self.address,
                                                              self.logger))
        sock = socket.create_connection((self.host, self.port),
                                        timeout=self.connect_timeout)
        try:
            client.connect(self.host, self.port, username=self.username,
                           pkey=self.pkey, sock=sock,
                           allow_agent=self.pkey is None, look_for_keys=False,
                           timeout=self.connect_timeout,
                           banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout)
        except paramiko.BadHostKeyException as exc:
            client.close()
            sock.close()
            raise JumpHostError(
                f"SSH jump host {self.address} offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}, not the key "
                "ssh_jump_known_hosts holds for it") from None
        except paramiko.AuthenticationException:
            client.close()
            sock.close()
            raise JumpHostError(
                f"SSH jump host {self.address} refused "
                + ("the agent's keys" if self.pkey is None else
                   "ssh_jump_key")) from None
        except BaseException:
            client.close()
            sock.close()
            raise
        client.get_transport().set_keepalive(30)
        self.logger.info("Connected to SSH jump host %s", self.address)
        return client

    def open_channel(self, host, port):
        """A direct-tcpip channel to host:port from the jump host, as a
        socket for paramiko; the jump connection is opened (again) when it
        is not up."""
        transport = self._client and self._client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            self._client = self._connect()
            transport = self._client.get_transport()
        try:
            return transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0),
                timeout=self.connect_timeout)
        except paramiko.ChannelException as exc:
            raise OSError(f"jump host {self.address} cannot reach "
                          f"{host_port(host, port)}: {exc.text}") from None

    @property
    def connected(self):
        transport = self._client and self._client.get_transport()
        return bool(transport and transport.is_active())

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


def jump_host(spec, key_text=None, agent=False, known_hosts_text=None,
              log=None):
    """The :class:`JumpHost` of the build parameters ``ssh_jump_host``
    (``spec``), ``ssh_jump_key`` (``key_text``), ``ssh_jump_agent`` and
    ``ssh_jump_known_hosts``; None without a spec. ValueError with a
    one-line reason when they do not make a usable jump host (checked
    before a build creates anything)."""
    if not (spec or "").strip():
        for name, given in (("ssh_jump_key", key_text), ("ssh_jump_agent",
                                                         agent),
                            ("ssh_jump_known_hosts", known_hosts_text)):
            if given:
                raise ValueError(f"{name} is given but ssh_jump_host is not")
        return None
    import getpass
    user, host, port = parse_jump_host(spec)
    if key_text and agent:
        raise ValueError("give ssh_jump_key or ssh_jump_agent, not both")
    if not key_text and not agent:
        raise ValueError("ssh_jump_host needs a key: ssh_jump_key (with "
                         "--file-parameter) or ssh_jump_agent true")
    pkey = load_private_key(key_text) if key_text else None
    if agent and not _agent_has_keys():
        raise ValueError("ssh_jump_agent: the SSH agent has no keys (is "
                         "SSH_AUTH_SOCK set?)")
    keys = known_hosts(known_hosts_text) if known_hosts_text else None
    return JumpHost(host, port, user or getpass.getuser(), pkey, keys, log)


def _agent_has_keys():
    agent = paramiko.Agent()
    try:
        return bool(agent.get_keys())
    finally:
        agent.close()


class _JumpKeyRefused(paramiko.MissingHostKeyPolicy):
    def __init__(self, address):
        self.address = address

    def missing_host_key(self, client, hostname, key):
        raise JumpHostError(
            f"SSH jump host {self.address} offered {key.get_name()} "
            f"{fingerprint(key)}, which ssh_jump_known_hosts does not list "
            f"for {hostname}")


class _JumpKeyWarned(paramiko.MissingHostKeyPolicy):
    def __init__(self, address, logger):
        self.address, self.logger = address, logger

    def missing_host_key(self, client, hostname, key):
        self.logger.warning("Accepting the SSH host key of jump host %s "
                            "unchecked: %s %s (give ssh_jump_known_hosts to "
                            "check it)", self.address, key.get_name(),
                            fingerprint(key))


# ---------------------------------------------------------------- the guest

class SSHGuest:
    """A guest reached over SSH as ``username`` with a private key.

    ``pkey`` is a paramiko private key object. ``command_prefix`` (e.g.
    "sudo" or "sudo -n") goes in front of privileged commands; empty when
    ``username`` is root. ``host_keys`` lists the expected host keys or
    fingerprints (paramiko keys, "TYPE BASE64" lines, "SHA256:..."), e.g.
    from ``host_keys_from_console``, or a callable returning them, called at
    each connection attempt (the guest may print its keys on the console
    only shortly before its SSH server starts). ``host_key_policy`` is one
    of HOST_KEY_POLICIES (module text). ``build_keys`` are the host keys the
    build gave the guest (key lines, e.g. ``hostkeys.HostKey.public``);
    with ``build_only`` no other key is accepted. ``key_grace``: seconds
    the console may take to show keys after the SSH server first answers
    (policies console and strict). After connecting,
    ``host_key`` holds what was accepted (policy, fingerprint, checked,
    source "build" or "console", warning). ``jump`` is
    a :class:`JumpHost` to tunnel through (closed with the guest).
    ``log`` (a logger) receives progress and command output.
    ``cancelled`` is an optional callable: when it returns true (or
    raises) long waits and commands stop with errors.Cancelled.
    """

    def __init__(self, host, port, username, pkey, command_prefix="",
                 host_keys=(), log=None, cancelled=None,
                 connect_timeout=10.0, host_key_policy="console", jump=None,
                 build_keys=(), build_only=False, key_grace=60.0):
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(f"unknown host key policy {host_key_policy!r}")
        if build_only and not build_keys:
            raise ValueError("build_only needs build_keys")
        self.host = host
        self.port = int(port)
        self.username = username
        self._pkey = pkey
        self.command_prefix = (command_prefix or "").strip()
        # A list is checked now; a callable's answers when they come.
        self._host_keys = host_keys if callable(host_keys) else \
            {_expected_identity(e) for e in host_keys}
        self.logger = log or LOG
        self._cancelled = cancelled
        self.connect_timeout = connect_timeout
        self.host_key_policy = host_key_policy
        self._build_keys = frozenset(_expected_identity(e) for e in build_keys)
        self._build_only = build_only
        #: Seconds the console may take to show keys once sshd answers.
        self.key_grace = key_grace
        #: Policy "console" may accept an unverified key (grace period over).
        self._fallback = key_grace <= 0
        #: The key accepted first: a reconnection must offer it again.
        self._pinned = None
        self.jump = jump
        self.host_key = None
        self._client = None
        self._forwards = {}  # guest port -> (host, port) it relays to

    def __repr__(self):
        return f"<SSHGuest {self.username}@{self.address}>"

    @property
    def address(self):
        """host:port (IPv6 bracketed), for messages; "via" the jump host."""
        shown = host_port(self.host, self.port)
        return f"{shown} via {self.jump.address}" if self.jump else shown

    # -- connecting

    def _check_cancelled(self):
        if self._cancelled is not None and self._cancelled():
            raise errors.Cancelled()

    def connect(self):
        """Open the SSH connection once; errors are raised as they come."""
        if self._client is not None:
            return
        if self.jump is not None:
            sock = self.jump.open_channel(self.host, self.port)
        else:
            sock = socket.create_connection((self.host, self.port),
                                            timeout=self.connect_timeout)
        if self._pinned is not None:
            policy = _HostKeyPolicy(self.address, set(), self.logger,
                                    self.host_key_policy, {self._pinned}, True)
            policy.origin = "it offered when the build first connected"
        else:
            try:
                expected = set() if self._build_only else (
                    {_expected_identity(e) for e in self._host_keys()}
                    if callable(self._host_keys) else self._host_keys)
            except BaseException:
                sock.close()
                raise
            policy = _HostKeyPolicy(
                self.address, expected, self.logger, self.host_key_policy,
                self._build_keys, self._build_only, self._fallback,
                self.key_grace)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(self.host, self.port, username=self.username,
                           pkey=self._pkey, sock=sock, allow_agent=False,
                           look_for_keys=False, timeout=self.connect_timeout,
                           banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout)
        except BaseException:
            client.close()
            sock.close()
            raise
        client.get_transport().set_keepalive(30)
        if self._pinned is None:
            self.host_key = policy.accepted
        if self._pinned is None and self.host_key_policy != "any":
            remote = client.get_transport().get_remote_server_key()
            self._pinned = f"{remote.get_name()} {remote.get_base64()}"
        self._client = client

    def wait_until_reachable(self, timeout, cancelled=None, auth_grace=120.0):
        """Connect, retrying while the guest's SSH server is not ready.

        Refused or timed-out connections, missing banners and rejected
        keys (cloud-init may not have installed it yet) are retried with
        backoff (through ``waiter.iterate``). Raises SSHTimeout naming
        host:port and the last error after ``timeout`` seconds, SSHAuthError
        when the key is still refused ``auth_grace`` seconds after the first
        refusal, HostKeyMismatch and JumpHostError at once,
        HostKeyUnverified (policy strict) when the console still shows no
        keys ``self.key_grace`` seconds after the server first answered (the
        guest may print them just after its SSH server starts; policy
        console then accepts the first key, with a warning),
        errors.Cancelled when ``cancelled()`` returns true.
        """
        cancelled = cancelled or self._cancelled
        first_refusal = None
        first_unverified = None
        last_error = "no attempt made"
        attempts = waiter.iterate(
            timeout, lambda: f"SSH on {self.address} not reachable: "
            f"{last_error}", interval=0.5, max_interval=SSH_RETRY_WITHIN,
            backoff=2.0)
        try:
            for _ in attempts:
                if cancelled is not None and cancelled():
                    raise errors.Cancelled()
                try:
                    self.connect()
                    return self
                except (HostKeyMismatch, JumpHostError):
                    raise
                except HostKeyUnverified as exc:
                    last_error = str(exc)
                    first_unverified = first_unverified or time.monotonic()
                    if time.monotonic() - first_unverified >= self.key_grace:
                        if isinstance(exc, _KeysNotShownYet):
                            self._fallback = True
                            continue
                        raise HostKeyUnverified(
                            f"{exc} (waited {self.key_grace:g} s for the "
                            "console to show them)") from None
                except paramiko.AuthenticationException as exc:
                    last_error = _describe(exc)
                    first_refusal = first_refusal or time.monotonic()
                    if time.monotonic() - first_refusal >= auth_grace:
                        raise self._auth_error() from None
                except RETRYABLE as exc:
                    last_error = _describe(exc)
                self.logger.debug("SSH on %s not ready yet (%s); retrying",
                                  self.address, last_error)
        except errors.WaitTimeout as exc:
            if first_refusal is not None and last_error == _AUTH_FAILED:
                raise self._auth_error() from None
            if first_unverified is not None:
                raise HostKeyUnverified(last_error) from None
            raise SSHTimeout(str(exc)) from None

    def _auth_error(self):
        return SSHAuthError(f"SSH authentication as '{self.username}' on "
                            f"{self.address} failed")

    def close(self):
        """Close the connection (its forwards end with it), and the jump
        host's with it."""
        self._forwards = {}
        self._disconnect()

    def _disconnect(self):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.jump is not None:
            self.jump.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _transport(self):
        """The live transport; a connection found dead is opened anew."""
        self.connect()
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            self.logger.info("SSH connection to %s was lost; reconnecting",
                             self.address)
            self._disconnect()
            self.connect()
            transport = self._client.get_transport()
            for bound, (host, port) in self._forwards.items():
                self._forward_again(transport, bound, host, port)
        return transport

    def _forward_again(self, transport, bound, host, port):
        """Bind guest port ``bound`` again on a new connection: the guest
        was told that port. The lost connection's sshd may hold it a while."""
        try:
            for _ in waiter.iterate(FORWARD_AGAIN_WITHIN, "", interval=0.5,
                                    max_interval=2.0):
                try:
                    transport.request_port_forward(
                        "127.0.0.1", bound, self._relay_to(host, port))
                    self.logger.info("Guest port 127.0.0.1:%d forwards to %s "
                                     "again", bound, host_port(host, port))
                    return
                except paramiko.SSHException:
                    pass
        except errors.WaitTimeout:
            raise errors.BuildError(
                f"SSH connection to {self.address} was lost and guest port "
                f"127.0.0.1:{bound} (forwarding to {host_port(host, port)}) "
                f"is still held after {FORWARD_AGAIN_WITHIN:g} s, so the "
                "guest cannot reach it") from None

    # -- tunnels

    def forward_remote(self, host, port):
        """Make ``host:port``, as this machine reaches it, reachable inside
        the guest at 127.0.0.1:N (an SSH remote forward, ``ssh -R``); returns
        N. Each connection the guest makes there is relayed through the SSH
        connection; a lost connection's forwards are bound again, on the
        same ports, when it is opened anew."""
        bound = self._transport().request_port_forward(
            "127.0.0.1", 0, self._relay_to(host, port))
        self._forwards[bound] = (host, port)
        self.logger.info("Guest port 127.0.0.1:%d forwards to %s through SSH",
                         bound, host_port(host, port))
        return bound

    def _relay_to(self, host, port):
        """The handler of a forward's connections: each is relayed to
        host:port in a thread of its own."""
        def accepted(channel, origin, server):
            threading.Thread(target=_relay, args=(channel, host, port,
                                                  self.logger),
                             daemon=True).start()
        return accepted

    # -- commands

    def command_line(self, command, privileged=True, merge_stderr=True):
        """The command line sent for ``command``: run by sh, behind the
        prefix when privileged, with stderr sent to stdout when merged (so
        the two keep their order)."""
        script = f"exec 2>&1; {command}" if merge_stderr else command
        line = f"sh -c {shlex.quote(script)}"
        if privileged and self.command_prefix:
            return f"{self.command_prefix} {line}"
        return line

    def run(self, command, privileged=True, check=True, timeout=None,
            name=None, merge_stderr=True):
        """Run a shell command in the guest; returns (exit_status, output).

        Output is stdout and stderr merged in order, or stdout alone when
        ``merge_stderr`` is false (stderr is then logged only). Each line
        goes to the log as it arrives. ``name`` labels the command in
        messages (default: the command itself, shortened). With ``check``,
        a non-zero exit raises CommandFailed, and a connection lost before
        the exit status SSHError (without ``check`` the status is then -1).
        ``timeout`` (seconds) bounds the whole command (CommandTimeout).
        """
        name = name or _shorten(command)
        self.logger.info("Running %s", _quoted(name))
        stdout, stderr = _Lines(self, name), _Lines(self, name, "stderr: ")
        channel = self._transport().open_session()
        try:
            channel.settimeout(0.5)
            channel.exec_command(
                self.command_line(command, privileged, merge_stderr))
            channel.shutdown_write()        # stdin: end of file, no prompts
            self._stream(channel, stdout, stderr, name, timeout)
            status = channel.recv_exit_status()
            stderr.feed(_drain_stderr(channel))
        finally:
            channel.close()
        output, errors_text = stdout.finish(), stderr.finish()
        if status == -1:                    # no exit status: connection gone
            if check:
                raise SSHError(f"SSH connection to {self.address} ended "
                               f"while running {_quoted(name)}")
            self.logger.info("SSH connection to %s ended while running %s",
                             self.address, _quoted(name))
            return status, output
        if status != 0:
            self.logger.info("%s exited with status %d", _quoted(name), status)
            if check:
                lines = (output + errors_text).splitlines()
                raise CommandFailed(name, status, lines[-KEEP_LINES:])
        return status, output

    def _stream(self, channel, stdout, stderr, name, timeout):
        """Feed a channel's output to the line loggers until it ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stderr.feed(_drain_stderr(channel))
            try:
                data = channel.recv(32768)
            except socket.timeout:
                data = None
            if data == b"":
                return                      # end of output
            stdout.feed(data)
            if deadline is not None and time.monotonic() > deadline:
                raise CommandTimeout(f"command {_quoted(name)} did not finish "
                                     f"within {timeout:g} s")
            self._check_cancelled()

    def poweroff(self, timeout=30):
        """Ask the guest to power off; the connection ends with it.

        Returns without waiting for the machine to stop (watch it from the
        outside); a command that outlives ``timeout`` is left behind.
        """
        try:
            self.run("poweroff", check=False, timeout=timeout, name="poweroff")
        except CommandTimeout:
            self.logger.info("poweroff did not end the SSH session within "
                             "%g s", timeout)
        finally:
            self.close()

    # -- files

    def put(self, data, path, mode=0o644, privileged=True):
        """Write ``data`` (bytes) to ``path`` in the guest with ``mode``.

        Privileged: uploaded by SFTP to a fresh temporary file, then
        installed with the command prefix (parent directories created,
        owned by the privileged user). Otherwise written directly by SFTP
        as the login user.
        """
        target = f"/tmp/.imgfac-{secrets.token_hex(8)}" if privileged else path
        sftp = paramiko.SFTPClient.from_transport(self._transport())
        try:
            with sftp.open(target, "wx" if privileged else "w") as stream:
                stream.write(data)
            sftp.chmod(target, mode)
        finally:
            sftp.close()
        if privileged:
            self.run(f"install -D -m {mode:04o} {shlex.quote(target)} "
                     f"{shlex.quote(path)}; status=$?; "
                     f"rm -f {shlex.quote(target)}; exit $status",
                     name=f"install {path}")
        self.logger.info("Wrote %s (%d bytes, mode %04o)", path, len(data), mode)


class _Lines:
    """Collects a command's output and logs it line by line."""

    def __init__(self, guest, name, label=""):
        self.guest, self.name, self.label = guest, name, label
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.text = []

    def feed(self, data):
        if not data:
            return
        self.pending += self.decoder.decode(data)
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._log(line)
            self.text.append(line + "\n")

    def finish(self):
        self.pending += self.decoder.decode(b"", final=True)
        if self.pending:
            self._log(self.pending)
            self.text.append(self.pending)
            self.pending = ""
        return "".join(self.text)

    def _log(self, line):
        shown = line.rstrip("\r").rsplit("\r", 1)[-1]   # last progress update
        self.guest.logger.info("[%s] %s%s", self.name, self.label, shown)


def _relay(channel, host, port, logger):
    """Copy bytes both ways between ``channel`` and a new connection to
    host:port until either side ends."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        logger.warning("Forwarded connection to %s failed: %s",
                       host_port(host, port), _describe(exc))
        channel.close()
        return
    sock.settimeout(None)

    def pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        try:  # one side ended: end both, so the other pump stops too
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        channel.close()

    back = threading.Thread(target=pump, args=(sock, channel), daemon=True)
    back.start()
    pump(channel, sock)
    back.join()
    sock.close()
    channel.close()


def _drain_stderr(channel):
    chunks = []
    while channel.recv_stderr_ready():
        chunks.append(channel.recv_stderr(32768))
    return b"".join(chunks)


_AUTH_FAILED = "authentication failed"


def _describe(exc):
    """A short human description of a connection error."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connection timed out"
    if isinstance(exc, paramiko.AuthenticationException):
        return _AUTH_FAILED
    if isinstance(exc, EOFError):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _shorten(command, width=60):
    text = " ".join(command.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _quoted(name):
    return f"command '{name}'"


__all__ = ["SSHGuest", "JumpHost", "SSHError", "SSHTimeout", "SSHAuthError",
           "HostKeyMismatch", "HostKeyUnverified", "JumpHostError",
           "CommandFailed", "CommandTimeout", "HOST_KEY_POLICIES",
           "host_keys_from_console", "fingerprint", "check_host",
           "host_port", "parse_jump_host", "load_private_key",
           "known_hosts", "jump_host"]

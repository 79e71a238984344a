"""The SSH jump host (``ssh -J``) through which a guest is reached: parsing
the ssh_jump_* build parameters, and the one SSH connection to it that
carries every tunnel to the guest."""
import dataclasses
import io
import logging
import re
import socket

import paramiko

from novaimagebuilder.guest import host_key_check
from novaimagebuilder.guest import host_names
from novaimagebuilder.guest import ssh_errors

LOG = logging.getLogger(__name__)


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
    return user or None, host_names.check_host(host, "ssh_jump_host"), port


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
        return "%s@%s" % (self.username,
                          host_names.host_port(self.host, self.port))

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
            raise ssh_errors.JumpHostError(
                f"SSH jump host {self.address} offered "
                f"{exc.key.get_name()} "
                f"{host_key_check.fingerprint(exc.key)}, not the key "
                "ssh_jump_known_hosts holds for it") from None
        except paramiko.AuthenticationException:
            client.close()
            sock.close()
            raise ssh_errors.JumpHostError(
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
                          f"{host_names.host_port(host, port)}: "
                          f"{exc.text}") from None

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
        raise ssh_errors.JumpHostError(
            f"SSH jump host {self.address} offered {key.get_name()} "
            f"{host_key_check.fingerprint(key)}, which ssh_jump_known_hosts "
            f"does not list for {hostname}")


class _JumpKeyWarned(paramiko.MissingHostKeyPolicy):
    def __init__(self, address, logger):
        self.address, self.logger = address, logger

    def missing_host_key(self, client, hostname, key):
        self.logger.warning("Accepting the SSH host key of jump host %s "
                            "unchecked: %s %s (give ssh_jump_known_hosts to "
                            "check it)", self.address, key.get_name(),
                            host_key_check.fingerprint(key))

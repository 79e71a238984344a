"""The SSH connection to a guest (paramiko): connecting with host-key checks
(:mod:`host_key_check`), directly or through a :class:`jump_host.JumpHost`;
waiting for a booting guest's SSH server; reconnecting a lost connection;
remote forwards (``ssh -R``) into the guest."""
import logging
import socket
import threading
import time

import paramiko

from novaimagebuilder import errors
from novaimagebuilder.guest import host_key_check
from novaimagebuilder.guest import host_names
from novaimagebuilder.guest import ssh_errors
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: What a connection attempt to a booting guest may raise and be retried:
#: refused or reset connections, a banner cut short (EOFError), SSH errors.
RETRYABLE = (OSError, EOFError, paramiko.SSHException)
#: The longest pause between two SSH attempts while a guest boots (seconds):
#: its SSH server is noticed this soon after it starts.
SSH_RETRY_WITHIN = 2.0
#: How long a reconnected guest connection tries to bind a forward's port
#: again while the lost connection's sshd still holds it (seconds).
FORWARD_AGAIN_WITHIN = 30.0


class SSHConnection:
    """An SSH connection to a guest as ``username`` with a private key.

    ``pkey`` is a paramiko private key object. ``host_keys`` lists the
    expected host keys or fingerprints (paramiko keys, "TYPE BASE64" lines,
    "SHA256:..."), e.g. from ``host_keys_from_console``, or a callable
    returning them, called at each connection attempt (the guest may print
    its keys on the console only shortly before its SSH server starts).
    ``host_key_policy`` is one of HOST_KEY_POLICIES (see
    :mod:`host_key_check`). ``build_keys`` are the host keys the build gave
    the guest (key lines, e.g. ``hostkeys.HostKey.public``); with
    ``build_only`` no other key is accepted. ``key_grace``: seconds the
    console may take to show keys after the SSH server first answers
    (policies console and strict). After connecting, ``host_key`` holds
    what was accepted (policy, fingerprint, checked, source "build" or
    "console", warning); a reconnection must offer the same key. ``jump``
    is a :class:`jump_host.JumpHost` to tunnel through (closed with the
    connection). ``log`` (a logger) receives progress. ``cancelled`` is an
    optional callable: when it returns true (or raises) long waits stop
    with errors.Cancelled.
    """

    def __init__(self, host, port, username, pkey, host_keys=(), log=None,
                 cancelled=None, connect_timeout=10.0,
                 host_key_policy="console", jump=None, build_keys=(),
                 build_only=False, key_grace=60.0):
        if host_key_policy not in host_key_check.HOST_KEY_POLICIES:
            raise ValueError(f"unknown host key policy {host_key_policy!r}")
        if build_only and not build_keys:
            raise ValueError("build_only needs build_keys")
        self.host = host
        self.port = int(port)
        self.username = username
        self._pkey = pkey
        # A list is checked now; a callable's answers when they come.
        self._host_keys = host_keys if callable(host_keys) else \
            {host_key_check.expected_identity(e) for e in host_keys}
        self.logger = log or LOG
        self._cancelled = cancelled
        self.connect_timeout = connect_timeout
        self.host_key_policy = host_key_policy
        self._build_keys = frozenset(
            host_key_check.expected_identity(e) for e in build_keys)
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
        return f"<{type(self).__name__} {self.username}@{self.address}>"

    @property
    def address(self):
        """host:port (IPv6 bracketed), for messages; "via" the jump host."""
        shown = host_names.host_port(self.host, self.port)
        return f"{shown} via {self.jump.address}" if self.jump else shown

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
            policy = host_key_check.HostKeyPolicy(
                self.address, set(), self.logger, self.host_key_policy,
                {self._pinned}, True)
            policy.origin = "it offered when the build first connected"
        else:
            try:
                expected = set() if self._build_only else (
                    {host_key_check.expected_identity(e)
                     for e in self._host_keys()}
                    if callable(self._host_keys) else self._host_keys)
            except BaseException:
                sock.close()
                raise
            policy = host_key_check.HostKeyPolicy(
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
        backoff (through ``waiter.iterate``). Raises (:mod:`ssh_errors`)
        SSHTimeout naming host:port and the last error after ``timeout``
        seconds, SSHAuthError when the key is still refused ``auth_grace``
        seconds after the first refusal, HostKeyMismatch and JumpHostError at
        once, HostKeyUnverified (policy strict) when the console still shows no
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
                except (ssh_errors.HostKeyMismatch, ssh_errors.JumpHostError):
                    raise
                except ssh_errors.HostKeyUnverified as exc:
                    last_error = str(exc)
                    first_unverified = first_unverified or time.monotonic()
                    if time.monotonic() - first_unverified >= self.key_grace:
                        if isinstance(exc, ssh_errors.KeysNotShownYet):
                            self._fallback = True
                            continue
                        raise ssh_errors.HostKeyUnverified(
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
                raise ssh_errors.HostKeyUnverified(last_error) from None
            raise ssh_errors.SSHTimeout(str(exc)) from None

    def _auth_error(self):
        return ssh_errors.SSHAuthError(
            f"SSH authentication as '{self.username}' on {self.address} "
            "failed")

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
                                     "again", bound,
                                     host_names.host_port(host, port))
                    return
                except paramiko.SSHException:
                    pass
        except errors.WaitTimeout:
            raise errors.BuildError(
                f"SSH connection to {self.address} was lost and guest port "
                f"127.0.0.1:{bound} (forwarding to "
                f"{host_names.host_port(host, port)}) is still held after "
                f"{FORWARD_AGAIN_WITHIN:g} s, so the guest cannot reach it") \
                from None

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
                         bound, host_names.host_port(host, port))
        return bound

    def _relay_to(self, host, port):
        """The handler of a forward's connections: each is relayed to
        host:port in a thread of its own."""
        def accepted(channel, origin, server):
            threading.Thread(target=_relay, args=(channel, host, port,
                                                  self.logger),
                             daemon=True).start()
        return accepted


def _relay(channel, host, port, logger):
    """Copy bytes both ways between ``channel`` and a new connection to
    host:port until either side ends."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        logger.warning("Forwarded connection to %s failed: %s",
                       host_names.host_port(host, port), _describe(exc))
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

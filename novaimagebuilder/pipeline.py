"""What one base-image build is made of, the same for every place machines
can run: the :class:`Backend` contract (how machines are booted, watched,
captured and removed: in Nova, or with local QEMU), the build's options,
its result and timings.

install media -> installer machine -> (power-off) -> JEOS capture -> guest
machine from the JEOS -> SSH customization -> ICICLE -> power-off -> image
capture: the steps are TaskFlow tasks (:mod:`novaimagebuilder.tasks`) in the
flows of :mod:`novaimagebuilder.flows`, run by :mod:`novaimagebuilder.runner`.
With a JEOS cache (:mod:`jeos`), a build whose JEOS is cached starts at the
guest machine, and a build that installs keeps its JEOS there.
"""
import abc
import contextlib
import dataclasses
import logging
import time

from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

#: Kernel arguments that point an installer at its script: the user data on
#: the config drive, or (d-i) the file its initrd carries.
SCRIPT_KERNEL_ARGS = {
    "kickstart": "inst.ks=hd:LABEL=config-2:/openstack/latest/user_data",
    "preseed": "priority=critical",
    # subiquity: run without asking for confirmation; cloud-init in the live
    # system finds the config drive itself (no ds= needed).
    "autoinstall": "autoinstall",
}

#: Seconds an installer's question may stay on its screen before the build
#: fails naming it (at most the inactivity timeout).
INSTALLER_QUESTION_GRACE = 60

#: Script kinds that an installer reads from its initrd, and the file name
#: there. Netboot d-i has no CD-ROM drivers, so it never sees a config drive;
#: it loads /preseed.cfg by itself. For an ISO install the script goes into
#: the initrd of a copy of the ISO (:mod:`remaster`).
INITRD_SCRIPTS = {"preseed": "preseed.cfg"}


class Backend(abc.ABC):
    """Where a build's machines run. Every method may block on the cloud/VM."""

    #: Short name for messages ("nova", "local").
    name = "backend"

    @abc.abstractmethod
    def prepare_media(self, media):
        """Make install media usable by machines; returns a handle."""

    @abc.abstractmethod
    def boot_installer(self, media, script, kind, cmdline, disk_size):
        """Boot the installer with ``cmdline`` and ``script`` (of ``kind``)
        as its user data (on its config drive) and, for a kind in
        INITRD_SCRIPTS, in its initrd. An ISO install boots a copy of the
        ISO whose boot loader boots the installer with ``cmdline`` (the
        ISO's own menu never sees it), the script in that copy's initrd for
        a kind in INITRD_SCRIPTS. Returns a machine."""

    @abc.abstractmethod
    def wait_powered_off(self, machine, what, timeout, inactivity=None,
                         screen=None):
        """Wait until ``machine`` has powered itself off.

        With ``screen`` (an installer_screen.Watch) the console's tail is fed
        to it at every poll; its ``activity`` is what must not stand still
        for ``inactivity`` seconds, and the wait fails as soon as it is
        ``stuck()`` at a question. Without it, console growth counts.
        """

    def adopt(self, identifier):
        """The machine ``identifier`` (the id a task saved) that an earlier
        process of this build made, to go on with it when the build
        resumes. errors.Gone when it is not there any more, BuildError
        naming what was found when it cannot be used."""
        raise errors.BuildError("%s: the %s backend cannot go on with a "
                                "machine an earlier process made"
                                % (identifier, self.name))

    @abc.abstractmethod
    def power_off(self, machine):
        """Ask the machine to power off and wait until it has."""

    @abc.abstractmethod
    def console(self, machine, lines=30):
        """The tail of the machine's console."""

    @abc.abstractmethod
    def delete(self, machine):
        """Remove a machine and what belongs only to it."""

    @abc.abstractmethod
    def capture(self, machine, role):
        """Capture the stopped machine's disk (role "jeos" or "image");
        returns a handle to it."""

    def capture_limit(self):
        """How long a capture may take, for the activity line (e.g. " (up
        to 32 min for 10 GiB)"; empty: no limit said)."""
        return ""

    @abc.abstractmethod
    def discard(self, captured):
        """Remove a captured disk."""

    @abc.abstractmethod
    def boot_guest(self, jeos, user, public_key, user_data=None):
        """Boot a machine from the JEOS, with ``public_key`` authorized for
        ``user`` and ``user_data`` (text, e.g. cloud-init's, secret: never
        logged) as its user data; returns the machine."""

    @abc.abstractmethod
    def ssh_address(self, machine):
        """``(host, port)`` where the machine's SSH server can be reached
        (from the jump host, when the build has one)."""

    def ssh_limits(self, machine):
        """What, besides the guest itself, may keep SSH from reaching it
        (e.g. a security group open to one address only), for a timeout's
        message; "" when nothing."""
        return ""

    def jeos_scope(self):
        """What about this backend shapes an installed system (machine size,
        ...), as a JSON-able dict for the JEOS cache key."""
        return {"backend": self.name}


@dataclasses.dataclass
class Result:
    image: object  # the backend's handle of the final image
    icicle: str
    timings: dict
    #: What the JEOS cache did: {"cache": "hit" | "stored" | "off",
    #: "jeos": the JEOS's id when it is cached}.
    jeos: dict = dataclasses.field(default_factory=dict)
    #: How the guest was reached: address, jump host, host-key policy and
    #: the accepted key (``SSHGuest.host_key``), for the image record.
    ssh: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Options:
    """The build parameters the pipeline itself uses."""

    default_user: str = "root"
    command_prefix: str | None = None
    timeout: int = 3600
    inactivity_timeout: int = 900
    ssh_timeout: int = 900
    ssh_host_key_policy: str = "console"
    ssh_host_keys: str = "auto"
    ssh_host_key_wait: int = 60
    kernel_args: str | None = None
    disk_size: int | None = None  # bytes
    keep_on_failure: bool = False
    jeos_cache: bool = True

    @classmethod
    def from_parameters(cls, parameters):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in parameters.items()
                      if k in known and v is not None})


class Clock:
    """Seconds per step, split into waiting on machines and our own work."""

    def __init__(self):
        self.timings = {}
        self._step = None
        self._depth = 0

    def step(self, name):
        self._finish()
        self._step = (name, time.monotonic(), [0.0])

    @contextlib.contextmanager
    def waiting(self):
        """Count the time spent in the block as waiting on machines (once,
        however deeply such blocks nest)."""
        self._depth += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self._depth -= 1
            if self._step and not self._depth:
                self._step[2][0] += time.monotonic() - started

    def _finish(self):
        if self._step:
            name, started, waited = self._step
            total = time.monotonic() - started
            self.timings[name] = {"cloud": round(waited[0], 2),
                                  "orchestrator": round(total - waited[0], 2)}
            self._step = None

    def result(self):
        self._finish()
        return self.timings


class TimedBackend:
    """Counts the time spent inside backend calls as waiting on machines."""

    def __init__(self, backend, clock):
        self._backend, self._clock = backend, clock

    def __getattr__(self, name):
        attr = getattr(self._backend, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            with self._clock.waiting():
                return attr(*args, **kwargs)
        return timed


def checked(function, *args, **kwargs):
    """``function(...)``, its ValueError (one line) as a BuildError."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        raise errors.BuildError(str(exc)) from None


def version():
    """The product version: generated install scripts change with it."""
    from importlib import metadata
    try:
        return metadata.version("imgfac-nova")
    except metadata.PackageNotFoundError:
        return "unknown"


def throwaway_key():
    """A new SSH key pair for one build: (paramiko key, OpenSSH public key)."""
    import paramiko
    key = paramiko.ECDSAKey.generate(bits=256)
    return key, "%s %s imgfac-nova-build" % (key.get_name(), key.get_base64())

"""One base-image build, the same for every place machines can run.

install media -> installer machine -> (power-off) -> JEOS capture -> guest
machine from the JEOS -> SSH customization -> ICICLE -> power-off -> image
capture, with every resource on the rollback stack. A :class:`Backend` says how
machines are booted, watched, captured and removed: in Nova, or with local QEMU.
With a JEOS cache (:mod:`jeos`), a build whose JEOS is cached starts at the
guest machine, and a build that installs keeps its JEOS there.
"""
import abc
import contextlib
import dataclasses
import logging
import time

from novaimagebuilder import errors
from novaimagebuilder import rollback as rollback_stack

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


class _Clock:
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


class _TimedBackend:
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


class Pipeline:
    """Runs one base-image build on a backend."""

    def __init__(self, backend, media_cache, progress=None, cancel=None,
                 log=None, jeos_cache=None, jeos_policy=None, build_id=None,
                 on_jeos=None):
        from novaimagebuilder import jeos
        self.clock = _Clock()
        self.backend = _TimedBackend(backend, self.clock)
        self.media_cache = media_cache
        self.jeos_cache = jeos_cache
        self.jeos_policy = jeos_policy or jeos.Policy()
        self.build_id = build_id
        #: Told what the JEOS cache did (Result.jeos) as soon as it is known.
        self._on_jeos = on_jeos or (lambda info: None)
        self._progress = progress or (lambda percent, activity: None)
        self.cancel = cancel
        self.log = log or LOG

    def progress(self, percent, activity):
        if self.cancel is not None and self.cancel.is_set():
            raise errors.Cancelled()
        self._progress(percent, activity)

    def run(self, template, parameters):
        """Build; returns a Result. Raises BuildError (one line) on failure."""
        options = Options.from_parameters(parameters)
        return self._unwinding(options, lambda undo: self._run(
            template, parameters, options, undo))

    def customize_image(self, image, template, parameters, finish=None):
        """Boot a copy of the finished ``image`` (a backend image handle),
        apply ``template``'s customization, read the ICICLE, run ``finish``
        (``(name, shell script, timeout)``, as root, the last thing before
        the power-off) and capture the result: a Result with the new image
        (``image`` itself is left as it was). A target image's target
        content is applied this way."""
        options = Options.from_parameters(parameters)

        def body(undo):
            new, manifest, reached = self._customize(
                image, template, parameters, options, undo, "the base image",
                finish)
            return Result(new, manifest, self.clock.result(), ssh=reached)
        return self._unwinding(options, body)

    def _unwinding(self, options, body):
        """``body(undo)`` with a new rollback stack, unwound afterwards."""
        undo = rollback_stack.Rollback(self.log)
        succeeded = False
        try:
            result = body(undo)
            succeeded = True
            return result
        finally:
            left = undo.unwind(succeeded, keep=options.keep_on_failure)
            if left and options.keep_on_failure and not succeeded:
                self.log.warning("Kept for debugging: %s. Remove them with "
                                 "'imgfac-nova sweep' or by hand.",
                                 "; ".join(left))
            elif left:
                self.log.error("Could not clean up: %s", "; ".join(left))

    def _run(self, template, parameters, options, undo):
        from novaimagebuilder import media as media_mod

        self.clock.step("media")
        self.progress(2, "Fetching the install media from %s"
                      % template.os.install.location)
        media = media_mod.fetch(template.os.install, self.media_cache,
                                parameters.get("install_kernel"),
                                parameters.get("install_ramdisk"), self.cancel)
        script, kind = self._install_script(template, parameters)
        cache_key, entry = self._find_jeos(template, parameters, media,
                                           options)
        if entry is not None:
            self.progress(50, "Reusing the cached JEOS %s (%s, stored %s)" % (
                entry.id, entry.name, time.strftime(
                    "%Y-%m-%d %H:%M", time.gmtime(entry.created))))
            jeos_handle, jeos_info = entry.id, {"cache": "hit",
                                                "jeos": entry.id}
        else:
            jeos_handle, discard = self._install(template, options, media,
                                                 script, kind, undo)
            jeos_info = {"cache": "off"}
            if cache_key is not None:
                stored = self._keep_jeos(jeos_handle, discard, cache_key,
                                         template, undo)
                jeos_handle = stored.id
                jeos_info = {"cache": "stored", "jeos": stored.id}
        self._on_jeos(jeos_info)

        image, manifest, reached = self._customize(
            jeos_handle, template, parameters, options, undo, "the JEOS")
        self.progress(98, "Cleaning up")
        return Result(image, manifest, self.clock.result(), jeos_info,
                      reached)

    def _customize(self, disk, template, parameters, options, undo, what,
                   finish=None):
        """Boot ``disk``, customize over SSH, read the ICICLE, run
        ``finish``, power off and capture: ``(image, icicle, how the guest
        was reached)``, the image on ``undo`` as a result."""
        from novaimagebuilder import customize
        from novaimagebuilder import icicle
        from novaimagebuilder import proxy as proxy_mod
        from novaimagebuilder import ssh

        backend = self.backend
        self.clock.step("customize")
        self.progress(55, "Booting %s to customize it" % what)
        key, public_key = _throwaway_key()
        host_key = user_data = None
        if options.ssh_host_keys != "console":
            from novaimagebuilder import hostkeys
            host_key = hostkeys.generate()
            user_data = hostkeys.user_data([host_key])
        guest = backend.boot_guest(disk, options.default_user, public_key,
                                   user_data=user_data)
        guest_entry = undo.push(str(guest), lambda: self.backend.delete(guest))
        host, port = backend.ssh_address(guest)
        jump = self._jump_host(parameters)
        proxy = _checked(proxy_mod.Proxy.from_parameters, parameters)
        self.progress(60, "Waiting for SSH on %s%s" % (
            ssh.host_port(host, port),
            " via jump host %s" % jump.address if jump else ""))
        # Time in the guest (SSH, commands) counts as waiting on machines.
        with self.clock.waiting():
            session = self._connect(guest, host, port, key, options, jump,
                                    host_key)
            reached = dict(session.host_key or {},
                           address=ssh.host_port(host, port))
            if jump is not None:
                reached["jump_host"] = jump.address
            try:
                if proxy is not None and parameters.get("proxy_tunnel"):
                    proxy = proxy.tunnelled(session.forward_remote)
                customize.customize(
                    session, template, self.log,
                    progress=lambda text: self.progress(70, text),
                    cancelled=self._cancelled,
                    proxy=proxy)
                self.progress(85, "Reading the installed packages (ICICLE)")
                packages = icicle.read_packages(
                    session, customize.os_family(template.os.name),
                    template.os.icicle_extra_command)
                if finish is not None:
                    name, script, timeout = finish
                    self.progress(87, "Running %s" % name)
                    session.run(script, timeout=timeout, name=name)
                self.progress(88, "Shutting the guest down")
                session.poweroff()
            finally:
                session.close()
        manifest = icicle.icicle_xml(packages, template.description)
        try:
            backend.wait_powered_off(
                guest, "waiting for the customized guest to power off", 300)
        except errors.WaitTimeout:
            self.log.warning("%s did not power off by itself; stopping it",
                             guest)
            backend.power_off(guest)

        self.clock.step("capture")
        self.progress(92, "Capturing the image")
        image = backend.capture(guest, "image")
        undo.push("image %s" % image, lambda: self.backend.discard(image),
                  result=True)
        undo.undo_now(guest_entry)
        return image, manifest, reached

    def _find_jeos(self, template, parameters, media, options):
        """``(cache key, usable Entry or None)``; the key is None when the
        build uses no JEOS cache."""
        from novaimagebuilder import jeos
        if self.jeos_cache is None or not options.jeos_cache:
            return None, None
        cache_key = jeos.key(template, parameters, media.sha256, dict(
            self.backend.jeos_scope(), version=_version()))
        with self.clock.waiting():
            entry = self.jeos_cache.find(cache_key)
        if entry is not None and not self.jeos_policy.usable(entry):
            self.log.info("The cached JEOS %s has expired", entry.id)
            entry = None
        return cache_key, entry

    def _install(self, template, options, media, script, kind, undo):
        """Upload the media, run the installer, capture the JEOS; returns
        the captured JEOS and its rollback entry."""
        backend = self.backend
        self.progress(5, "Preparing the install media")
        media_handle = backend.prepare_media(media)

        self.clock.step("install")
        cmdline = " ".join(filter(None, [
            "console=ttyS0", SCRIPT_KERNEL_ARGS.get(kind),
            template.os.kernelparam, options.kernel_args]))
        self.progress(8, "Booting the %s installer" % template.os.name)
        installer = backend.boot_installer(media_handle, script, kind,
                                           cmdline, options.disk_size)
        installer_entry = undo.push(str(installer),
                                    lambda: self.backend.delete(installer))
        self.progress(10, "Installing %s %s (waiting for the installer to "
                      "power off)" % (template.os.name, template.os.version))
        self._wait_installer(installer, options)

        self.clock.step("jeos")
        self.progress(50, "Capturing the JEOS disk")
        captured = backend.capture(installer, "jeos")
        discard = undo.push("JEOS %s" % captured,
                            lambda: self.backend.discard(captured))
        undo.undo_now(installer_entry)
        return captured, discard

    def _keep_jeos(self, captured, discard, cache_key, template, undo):
        """Make the captured JEOS a cache entry (it stays on the rollback
        stack until it is one), then remove the entries that have expired."""
        from novaimagebuilder import jeos
        with self.clock.waiting():
            stored = self.jeos_cache.add(captured, cache_key,
                                         jeos.describe(template),
                                         self.build_id)
        undo.forget(discard)
        self.log.info("Stored the JEOS in the JEOS cache (%s) as %s",
                      self.jeos_cache.where, stored.id)
        try:
            with self.clock.waiting():
                self.jeos_cache.prune(self.jeos_policy, keep={stored.id},
                                      log=self.log)
        except Exception as exc:  # an old entry left is no reason to fail
            self.log.warning("Could not remove expired JEOS cache entries: "
                             "%s", exc)
        return stored

    def _cancelled(self):
        return self.cancel is not None and self.cancel.is_set()

    def _install_script(self, template, parameters):
        from novaimagebuilder import installscript
        return installscript.for_build(template, parameters)

    def _wait_installer(self, installer, options):
        """Wait for the installer to power off; on failure, timeout or
        interruption its last screen and console tail go to the build log,
        and the error names the question it waits at, if any."""
        from novaimagebuilder import installer_screen
        screen = installer_screen.Watch(
            grace=min(INSTALLER_QUESTION_GRACE, options.inactivity_timeout))
        try:
            self.backend.wait_powered_off(
                installer, "waiting for the installer to finish",
                options.timeout, options.inactivity_timeout, screen=screen)
        except BaseException as exc:
            console = self.backend.console(installer,
                                           installer_screen.CONSOLE_LINES)
            self.log.error(
                "The installer's last screen:\n%s\nEnd of its console:\n%s",
                installer_screen.screen_text(console),
                "\n".join(installer_screen.plain_tail(console, 15)))
            if not isinstance(exc, (errors.WaitTimeout, errors.WaitFailed)):
                raise
            asked = installer_screen.question(installer_screen.render(
                console))
            if asked:
                raise errors.BuildError(installer_screen.waiting_at(asked)) \
                    from None
            tail = installer_screen.plain_tail(console, 1)
            raise errors.BuildError("%s; console ends: %s" % (
                exc, tail[-1] if tail else "(console is empty)")) from None

    def _jump_host(self, parameters):
        from novaimagebuilder import ssh
        return _checked(ssh.jump_host, parameters.get("ssh_jump_host"),
                        parameters.get("ssh_jump_key"),
                        parameters.get("ssh_jump_agent"),
                        parameters.get("ssh_jump_known_hosts"), log=self.log)

    def _connect(self, machine, host, port, key, options, jump=None,
                 host_key=None):
        """An SSHGuest logged in to the guest (through ``jump``), checking
        its host key against ``host_key`` (a hostkeys.HostKey the build gave
        it) and, unless ssh_host_keys is "build", the console's; on failure
        everything it opened, the jump connection too, is closed."""
        from novaimagebuilder import ssh
        session = ssh.SSHGuest(
            host, port, options.default_user, key,
            command_prefix=options.command_prefix or "",
            host_keys=lambda: ssh.host_keys_from_console(
                self.backend.console(machine, 400)),
            log=self.log, cancelled=self._cancelled,
            host_key_policy=options.ssh_host_key_policy, jump=jump,
            build_keys=[host_key.public] if host_key else (),
            build_only=options.ssh_host_keys == "build",
            key_grace=options.ssh_host_key_wait)
        try:
            session.wait_until_reachable(options.ssh_timeout)
        except ssh.SSHTimeout as exc:
            session.close()
            limits = self.backend.ssh_limits(machine)
            if not limits:
                raise
            raise ssh.SSHTimeout(f"{exc} ({limits})") from None
        except BaseException:
            session.close()
            raise
        return session


def _checked(function, *args, **kwargs):
    """``function(...)``, its ValueError (one line) as a BuildError."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        raise errors.BuildError(str(exc)) from None


def _version():
    """The product version: generated install scripts change with it."""
    from importlib import metadata
    try:
        return metadata.version("imgfac-nova")
    except metadata.PackageNotFoundError:
        return "unknown"


def _throwaway_key():
    """A new SSH key pair for one build: (paramiko key, OpenSSH public key)."""
    import paramiko
    key = paramiko.ECDSAKey.generate(bits=256)
    return key, "%s %s imgfac-nova-build" % (key.get_name(), key.get_base64())

"""What the tasks of one build share while it runs (:class:`BuildRun`: the
backend, the caches, progress and cancel, the template and parameters, and
the machines this process holds), and the base class of those tasks.

None of it is saved: a task's saved result is the plain id of what it made,
and :attr:`BuildRun.held` maps such ids to the live handles the backend
gave (a task that fails half-way finds there what it must remove).
"""
import logging

from taskflow import task

from novaimagebuilder import errors
from novaimagebuilder import pipeline

LOG = logging.getLogger(__name__)

#: What a backend does in the cloud (:class:`novaimagebuilder.pipeline.Backend`;
#: adopting a machine may stop what an earlier run left, as local QEMU
#: does) and a JEOS cache changes: each asks first whether the build's
#: claim is still held (BuildRun.guard).
BACKEND_ACTIONS = frozenset(("prepare_media", "boot_installer", "boot_guest",
                             "adopt", "power_off", "delete", "capture",
                             "discard"))
JEOS_CACHE_ACTIONS = frozenset(("add", "prune", "remove"))


class BuildRun:
    """One run of a build's flow."""

    def __init__(self, backend, media_cache, template=None, parameters=None,
                 progress=None, cancel=None, log=None, jeos_cache=None,
                 jeos_policy=None, build_id=None, on_jeos=None, owned=None,
                 claim=None):
        from novaimagebuilder.images import jeos
        #: Asked before each action in the cloud whether this process still
        #: holds the build's claim (None: no claim, always): a jobboard
        #: worker that lost it stops there (:meth:`guard`).
        self.claim = claim
        self.clock = pipeline.Clock()
        self.backend = pipeline.TimedBackend(
            _Guarded(backend, BACKEND_ACTIONS, self.guard), self.clock)
        self.media_cache = media_cache
        self.template = template
        self.parameters = dict(parameters or {})
        self.options = pipeline.Options.from_parameters(self.parameters)
        self.jeos_cache = None if jeos_cache is None else _Guarded(
            jeos_cache, JEOS_CACHE_ACTIONS, self.guard)
        self.jeos_policy = jeos_policy or jeos.Policy()
        self.build_id = build_id
        #: Told what the JEOS cache did as soon as it is known.
        self.on_jeos = on_jeos or (lambda info: None)
        self._progress = progress or (lambda percent, activity: None)
        self.cancel = cancel
        self.log = log or LOG
        #: id -> handle of the machines this process holds (until they are
        #: removed).
        self.held = {}
        #: JEOS ids the JEOS cache took: no revert removes them.
        self.kept = set()
        #: What the reverts left (kept for debugging, or not removable).
        self.left = []
        #: Asked before each removal on the way back whether this process
        #: still drives the build (None: always): a jobboard worker whose
        #: claim another took over leaves what the build made to it.
        self.owned = owned

    def guard(self, action):
        """Before ``action`` in the cloud: raise HandedBack when this
        process no longer holds the build's claim (another worker took the
        build over), so the build stops there, undoing nothing."""
        if self.claim is not None and not self.claim():
            self.log.warning("Stopping before %s: this worker lost the "
                             "build's claim", action)
            raise errors.HandedBack("claim lost before %s" % action)

    def hold(self, handle, identifier=None):
        """Remember ``handle`` under its id (``identifier`` or its
        ``id``/``name``/str()); returns the id."""
        if identifier is None:
            identifier = getattr(handle, "id", None) or \
                getattr(handle, "name", None) or str(handle)
        self.held[identifier] = handle
        return identifier

    def handle(self, identifier):
        """The live handle of ``identifier`` (the id itself when the backend
        works with plain ids)."""
        return self.held.get(identifier, identifier)

    def machine(self, identifier):
        """The machine ``identifier``: the one this process holds, else the
        one an earlier process of the build made (adopted from the
        backend; errors.Gone when it is not there)."""
        if identifier not in self.held:
            self.held[identifier] = self.backend.adopt(identifier)
        return self.held[identifier]

    def remove_machine(self, identifier):
        """On the way back: delete the machine ``identifier`` if it is
        still there (held here, or left by an earlier process)."""
        try:
            machine = self.release(identifier) or \
                self.backend.adopt(identifier)
        except errors.Gone:
            return
        except errors.BuildError as exc:
            self.log.warning("Could not find %s to remove it: %s",
                             identifier, exc)
            self.left.append(str(identifier))
            return
        self.remove(str(machine), self.backend.delete, machine)

    def release(self, identifier):
        """Stop holding ``identifier``: its handle, or None when this
        process holds it no more (removed already)."""
        return self.held.pop(identifier, None)

    def progress(self, percent, activity):
        if self.cancelled():
            raise errors.Cancelled()
        self._progress(percent, activity)

    def cancelled(self):
        return self.cancel is not None and self.cancel.is_set()

    def remove(self, what, action, *args):
        """Undo one thing (``action(*args)``) on the way back: logged, never
        raised (a revert goes on with the rest)."""
        if self.owned is not None and not self.owned():
            self.log.warning("Leaving %s to the process that took this "
                             "build over", what)
            return
        if self.options.keep_on_failure:
            self.log.warning("Kept %s for debugging (keep_on_failure)", what)
            self.left.append(what)
            return
        try:
            action(*args)
            self.log.info("Removed %s", what)
        except Exception as exc:
            self.log.warning("Could not remove %s: %s", what, exc)
            self.left.append("%s: %s" % (what, exc))

    def report_left(self):
        """After the reverts: one line on what is left, kept or not
        removable."""
        if self.left and self.options.keep_on_failure:
            self.log.warning("Kept for debugging: %s. Remove them with "
                             "'imgfac-nova sweep' or by hand.",
                             "; ".join(self.left))
        elif self.left:
            self.log.error("Could not clean up: %s", "; ".join(self.left))

    # -- installer ----------------------------------------------------------

    def install_script(self):
        from novaimagebuilder.scripts import installscript
        return installscript.for_build(self.template, self.parameters)

    def wait_installer(self, installer, started):
        """Wait for the installer (started at ``started``, a time.time())
        to power off, until the build's install timeout from then; on
        failure, timeout or interruption its last screen and console tail
        go to the build log, and the error names the question it waits at,
        if any."""
        import time

        from novaimagebuilder.installer import installer_screen
        options = self.options
        screen = installer_screen.Watch(grace=min(
            pipeline.INSTALLER_QUESTION_GRACE, options.inactivity_timeout))
        left = started + options.timeout - time.time()
        try:
            if left <= 0:
                raise errors.WaitTimeout(
                    "timed out waiting for the installer to finish (its %d s "
                    "had passed when the build resumed)" % options.timeout)
            self.backend.wait_powered_off(
                installer, "waiting for the installer to finish",
                left, options.inactivity_timeout, screen=screen)
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

    # -- guest --------------------------------------------------------------

    def jump_host(self):
        from novaimagebuilder.guest import jump_host
        parameters = self.parameters
        return pipeline.checked(
            jump_host.jump_host, parameters.get("ssh_jump_host"),
            parameters.get("ssh_jump_key"), parameters.get("ssh_jump_agent"),
            parameters.get("ssh_jump_known_hosts"), log=self.log)

    def connect(self, machine, host, port, key, jump=None, host_key=None):
        """An SSHGuest logged in to the guest (through ``jump``), checking
        its host key against ``host_key`` (a hostkeys.HostKey the build gave
        it) and, unless ssh_host_keys is "build", the console's; on failure
        everything it opened, the jump connection too, is closed."""
        from novaimagebuilder.guest import host_key_check
        from novaimagebuilder.guest import ssh
        from novaimagebuilder.guest import ssh_errors
        options = self.options
        session = ssh.SSHGuest(
            host, port, options.default_user, key,
            command_prefix=options.command_prefix or "",
            host_keys=lambda: host_key_check.host_keys_from_console(
                self.backend.console(machine, 400)),
            log=self.log, cancelled=self.cancelled,
            host_key_policy=options.ssh_host_key_policy, jump=jump,
            build_keys=[host_key.public] if host_key else (),
            build_only=options.ssh_host_keys == "build",
            key_grace=options.ssh_host_key_wait)
        try:
            session.wait_until_reachable(options.ssh_timeout)
        except ssh_errors.SSHTimeout as exc:
            session.close()
            limits = self.backend.ssh_limits(machine)
            if not limits:
                raise
            raise ssh_errors.SSHTimeout(f"{exc} ({limits})") from None
        except BaseException:
            session.close()
            raise
        return session


class _Guarded:
    """``target`` whose methods named in ``actions`` call ``guard(name)``
    first; every other attribute is the target's own."""

    def __init__(self, target, actions, guard):
        self._target, self._actions, self._guard = target, actions, guard

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if name not in self._actions:
            return attr

        def guarded(*args, **kwargs):
            self._guard(name)
            return attr(*args, **kwargs)
        return guarded


class BuildTask(task.Task):
    """A task of ``run`` (a BuildRun), named by its class's ``name``."""

    name = None

    def __init__(self, run, **kwargs):
        super().__init__(name=self.name, **kwargs)
        self.run = run

"""Tasks that turn a disk (the JEOS, or a finished image) into a customized
image: boot it, customize it over SSH, read the ICICLE, capture it, remove
the guest. Names in :mod:`novaimagebuilder.tasks.names`."""
from novaimagebuilder import errors
from novaimagebuilder import pipeline
from novaimagebuilder.tasks import context
from novaimagebuilder.tasks import names


class Customize(context.BuildTask):
    """Boot ``disk`` with a throw-away SSH key (and host key, unless the
    console is to show it), apply the template over SSH, read the ICICLE,
    run ``finish`` and power the guest off; provides ``{"machine": the
    guest's id, "icicle": the ICICLE XML, "ssh": how the guest was
    reached}``. The SSH keys live in this process only, so a rerun (the
    build resumed) boots a new guest, and the backend removes the one an
    earlier process left. Reversion strategy: delete the guest (also when
    the task failed half-way, or an earlier process booted it)."""

    name = names.CUSTOMIZE
    default_provides = names.GUEST

    def __init__(self, run, what="the JEOS", finish=None, **kwargs):
        super().__init__(run, **kwargs)
        self.what = what
        self.finish = finish
        self._guest = None

    def execute(self, disk):
        from novaimagebuilder.guest import customize
        from novaimagebuilder.guest import host_names
        from novaimagebuilder.guest import icicle
        from novaimagebuilder.guest import package_managers
        from novaimagebuilder.guest import proxy as proxy_mod
        run, options, parameters = self.run, self.run.options, \
            self.run.parameters
        backend = run.backend
        run.clock.step("customize")
        run.progress(55, "Booting %s to customize it" % self.what)
        key, public_key = pipeline.throwaway_key()
        host_key = user_data = None
        if options.ssh_host_keys != "console":
            from novaimagebuilder.guest import hostkeys
            host_key = hostkeys.generate()
            user_data = hostkeys.user_data([host_key])
        guest = self._guest = backend.boot_guest(
            run.handle(disk), options.default_user, public_key,
            user_data=user_data)
        host, port = backend.ssh_address(guest)
        jump = run.jump_host()
        proxy = pipeline.checked(proxy_mod.Proxy.from_parameters, parameters)
        run.progress(60, "Waiting for SSH on %s%s" % (
            host_names.host_port(host, port),
            " via jump host %s" % jump.address if jump else ""))
        # Time in the guest (SSH, commands) counts as waiting on machines.
        with run.clock.waiting():
            session = run.connect(guest, host, port, key, jump, host_key)
            reached = dict(session.host_key or {},
                           address=host_names.host_port(host, port))
            if jump is not None:
                reached["jump_host"] = jump.address
            try:
                if proxy is not None and parameters.get("proxy_tunnel"):
                    proxy = proxy.tunnelled(session.forward_remote)
                customize.customize(
                    session, run.template, run.log,
                    progress=lambda text: run.progress(70, text),
                    cancelled=run.cancelled, proxy=proxy)
                run.progress(85, "Reading the installed packages (ICICLE)")
                packages = icicle.read_packages(
                    session, package_managers.os_family(run.template.os.name),
                    run.template.os.icicle_extra_command)
                if self.finish is not None:
                    name, script, timeout = self.finish
                    run.progress(87, "Running %s" % name)
                    session.run(script, timeout=timeout, name=name)
                run.progress(88, "Shutting the guest down")
                session.poweroff()
            finally:
                session.close()
        manifest = icicle.icicle_xml(packages, run.template.description)
        try:
            backend.wait_powered_off(
                guest, "waiting for the customized guest to power off", 300)
        except errors.WaitTimeout:
            run.log.warning("%s did not power off by itself; stopping it",
                            guest)
            backend.power_off(guest)
        return {"machine": run.hold(guest), "icicle": manifest,
                "ssh": reached}

    def revert(self, result, *args, **kwargs):
        guest, self._guest = self._guest, None
        if isinstance(result, dict):
            self.run.remove_machine(result["machine"])
        elif guest is not None:  # failed half-way
            self.run.remove(str(guest), self.run.backend.delete, guest)


class CaptureImage(context.BuildTask):
    """Capture the powered-off guest's disk; provides the image's id.
    Reversion strategy: discard the image (the build failed after it)."""

    name = names.CAPTURE_IMAGE
    default_provides = names.IMAGE

    def execute(self, guest):
        run = self.run
        run.clock.step("capture")
        run.progress(92, "Capturing the image" +
                     run.backend.capture_limit())
        return run.backend.capture(run.machine(guest["machine"]), "image")

    def revert(self, result, *args, **kwargs):
        if isinstance(result, str):
            self.run.remove("image %s" % result, self.run.backend.discard,
                            result)


class DescribeImage(context.BuildTask):
    """Hand the captured image to ``describe(handle, ICICLE)`` (the
    caller's properties and record: a target image made in the cloud).
    Reversion
    strategy: none of its own (CaptureImage's revert discards the
    image)."""

    name = names.DESCRIBE_IMAGE

    def __init__(self, run, describe, **kwargs):
        super().__init__(run, **kwargs)
        self.describe = describe

    def execute(self, image, guest):
        self.describe(self.run.handle(image), guest["icicle"])


class RemoveGuest(context.BuildTask):
    """Delete the guest once its disk is captured. Reversion strategy:
    none (Customize's revert removes it)."""

    name = names.REMOVE_GUEST

    def execute(self, guest):
        machine = self.run.machine(guest["machine"])
        self.run.backend.delete(machine)
        self.run.release(guest["machine"])
        self.run.log.info("Removed %s", machine)

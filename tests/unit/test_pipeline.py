"""The shared pipeline's order, clean-up and errors, on a recording backend."""
import threading

import pytest

from imgfac_nova import template as tdl
from novaimagebuilder import errors
from novaimagebuilder.installer import media
from novaimagebuilder import pipeline
from novaimagebuilder import runner

TEMPLATE = tdl.parse_template("""<template><name>p</name>
  <os><name>Debian</name><version>12</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>pw</rootpw></os>
  <packages><package name='hello'/></packages>
</template>""")


class Recorder(pipeline.Backend):
    """Machines are names; everything done is recorded; one step can fail."""

    def __init__(self, fail=None):
        self.calls, self.alive, self.fail = [], set(), fail
        self.console_text = "booting\nlast console line"

    def _do(self, step, result=None):
        self.calls.append(step)
        if self.fail == step:
            raise errors.BuildError("%s broke" % step)
        return result

    def prepare_media(self, media):
        return self._do("prepare_media", {"kernel": "k", "ramdisk": "r"})

    def boot_installer(self, media, script, kind, cmdline, disk_size):
        self.script, self.cmdline, self.disk_size = script, cmdline, disk_size
        self._do("boot_installer")
        self.alive.add("installer")
        return "installer"

    def wait_powered_off(self, machine, what, timeout, inactivity=None,
                         screen=None):
        self._do("wait_" + machine)
        if self.fail == "hang_" + machine:
            raise errors.WaitTimeout("timed out %s (after 5 s)" % what)

    def adopt(self, identifier):
        if identifier not in self.alive:
            raise errors.Gone("%s is gone" % identifier)
        return identifier

    def power_off(self, machine):
        self._do("power_off")

    def console(self, machine, lines=30):
        return self.console_text

    def delete(self, machine):
        self._do("delete_" + machine)
        self.alive.discard(machine)

    def capture(self, machine, role):
        self._do("capture_" + role)
        self.alive.add(role)
        return role

    def discard(self, captured):
        self._do("discard_" + captured)
        self.alive.discard(captured)

    def boot_guest(self, jeos, user, public_key, user_data=None):
        self.user, self.public_key = user, public_key
        self.user_data = user_data
        self._do("boot_guest")
        self.alive.add("guest")
        return "guest"

    def ssh_address(self, machine):
        return ("127.0.0.9", 22)


class FakeSession:
    instances = []
    host_key = None

    def __init__(self, host, port, user, key, **kwargs):
        self.address, self.user, self.kwargs = (host, port), user, kwargs
        self.commands, self.closed = [], False
        FakeSession.instances.append(self)

    def wait_until_reachable(self, timeout):
        from novaimagebuilder.guest import ssh_errors
        if self.kwargs.get("command_prefix") == "refuse":
            raise errors.BuildError("SSH authentication failed")
        if self.kwargs.get("command_prefix") == "unreachable":
            raise ssh_errors.SSHTimeout("SSH on 127.0.0.9:22 not reachable: "
                                        "connection timed out (after 5 s)")

    def run(self, command, **kwargs):
        self.commands.append(command)
        return 0, ""

    def poweroff(self):
        self.commands.append("poweroff")
        self.close()

    def close(self):
        self.closed = True


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    from novaimagebuilder.guest import customize, icicle, ssh
    FakeSession.instances = []
    monkeypatch.setattr(ssh, "SSHGuest", FakeSession)
    monkeypatch.setattr(media, "fetch", lambda *a, **k: media.Media(
        "kernel", {"kernel": "k", "ramdisk": "r"}, {}, "x"))

    def fake_customize(session, template, log, progress=None, cancelled=None,
                       proxy=None):
        if session.kwargs.get("command_prefix") == "fail-customize":
            raise errors.BuildError("command 'x' exited with status 1: boom")
        progress("Installing 1 package")
        session.commands.append("customized")
    monkeypatch.setattr(customize, "customize", fake_customize)
    monkeypatch.setattr(icicle, "read_packages", lambda *a, **k: ["hello"])
    return tmp_path


def _run(backend, cache_dir, progress=None, cancel=None, **parameters):
    run = runner.Pipeline(backend, media.MediaCache(str(cache_dir)),
                          progress=progress, cancel=cancel)
    return run.run(TEMPLATE, dict({"install_script": "disk /dev/vda\n"},
                                  **parameters))


def test_success_order_result_and_cleanup(fakes):
    backend, seen = Recorder(), []
    result = _run(backend, fakes, progress=lambda p, a: seen.append((p, a)),
                  default_user="debian", command_prefix="sudo",
                  kernel_args="extra=1", disk_size=5 * 1024 ** 3)
    assert backend.calls == [
        "prepare_media", "boot_installer", "wait_installer", "capture_jeos",
        "delete_installer", "boot_guest", "wait_guest", "capture_image",
        "delete_guest", "discard_jeos"]
    assert backend.alive == {"image"}
    assert result.image == "image"
    assert "<package name=\"hello\"/>" in result.icicle.replace("'", '"')
    assert backend.script == "disk /dev/vda\n"
    assert backend.cmdline == "console=ttyS0 extra=1"
    assert backend.disk_size == 5 * 1024 ** 3
    assert backend.user == "debian"
    assert backend.public_key.startswith("ecdsa-sha2-nistp256 ")
    session = FakeSession.instances[0]
    assert session.address == ("127.0.0.9", 22)
    assert session.commands == ["customized", "poweroff"]
    assert session.closed
    percents = [p for p, _ in seen]
    assert percents == sorted(percents)
    assert set(result.timings) == {"media", "install", "jeos", "customize",
                                   "capture"}
    assert all(set(t) == {"cloud", "orchestrator"}
               for t in result.timings.values())
    assert all(t["orchestrator"] >= 0 for t in result.timings.values())


@pytest.mark.parametrize("fail,left_calls", [
    ("prepare_media", []),
    ("boot_installer", []),
    ("capture_jeos", ["delete_installer"]),
    ("boot_guest", ["discard_jeos"]),
    ("capture_image", ["delete_guest", "discard_jeos"]),
])
def test_failure_at_each_step_removes_everything(fakes, fail, left_calls):
    backend = Recorder(fail=fail)
    with pytest.raises(errors.BuildError, match="%s broke" % fail):
        _run(backend, fakes)
    after = backend.calls[backend.calls.index(fail) + 1:]
    assert after == left_calls
    assert backend.alive == set()


def test_hung_installer_reports_console_tail(fakes):
    backend = Recorder(fail="hang_installer")
    with pytest.raises(errors.BuildError) as exc:
        _run(backend, fakes)
    assert str(exc.value) == (
        "timed out waiting for the installer to finish (after 5 s); console "
        "ends: last console line")
    assert backend.calls[-1] == "delete_installer"
    assert backend.alive == set()


@pytest.mark.parametrize("prefix,message", [
    ("refuse", "SSH authentication failed"),
    ("fail-customize", "command 'x' exited with status 1: boom"),
])
def test_guest_failures_remove_guest_and_jeos(fakes, prefix, message):
    backend = Recorder()
    with pytest.raises(errors.BuildError, match=message):
        _run(backend, fakes, command_prefix=prefix)
    assert backend.calls[-2:] == ["delete_guest", "discard_jeos"]
    assert backend.alive == set()


def test_keep_on_failure_keeps_machines(fakes, caplog):
    backend = Recorder()
    with pytest.raises(errors.BuildError):
        _run(backend, fakes, command_prefix="fail-customize",
             keep_on_failure=True)
    assert backend.alive == {"guest", "jeos"}
    assert "Kept for debugging: guest; JEOS jeos" in caplog.text


def test_guest_that_does_not_power_off_is_stopped(fakes):
    backend = Recorder(fail="hang_guest")
    result = _run(backend, fakes)
    assert result.image == "image"
    calls = backend.calls
    after = calls[calls.index("wait_guest") + 1:]
    assert after[:2] == ["power_off", "capture_image"]


def test_cancel_before_start_creates_nothing(fakes):
    cancel = threading.Event()
    cancel.set()
    backend = Recorder()
    with pytest.raises(errors.Cancelled):
        _run(backend, fakes, cancel=cancel)
    assert backend.calls == []


def test_result_says_how_the_guest_was_reached(fakes, monkeypatch):
    monkeypatch.setattr(FakeSession, "host_key", {
        "policy": "console", "fingerprint": "SHA256:x", "checked": True})
    result = _run(Recorder(), fakes, default_user="debian")
    assert result.ssh == {"policy": "console", "fingerprint": "SHA256:x",
                          "checked": True, "address": "127.0.0.9:22"}
    assert FakeSession.instances[0].kwargs["host_key_policy"] == "console"
    assert FakeSession.instances[0].kwargs["jump"] is None


def _customize(backend, cache_dir, **parameters):
    run = runner.Pipeline(backend, media.MediaCache(str(cache_dir)))
    return run.customize_image("base", TEMPLATE, parameters)


def test_customize_image_boots_the_image_and_captures_a_new_one(fakes):
    backend = Recorder()
    result = _customize(backend, fakes, default_user="debian")
    assert backend.calls == ["boot_guest", "wait_guest", "capture_image",
                             "delete_guest"]
    assert result.image == "image"
    assert backend.alive == {"image"}  # "base" was never touched
    assert backend.user == "debian"
    assert FakeSession.instances[0].commands == ["customized", "poweroff"]
    assert "hello" in result.icicle
    assert set(result.timings) == {"customize", "capture"}


@pytest.mark.parametrize("fail,left_calls", [
    ("boot_guest", []),
    ("capture_image", ["delete_guest"]),
])
def test_customize_image_failure_removes_what_it_made(fakes, fail,
                                                      left_calls):
    backend = Recorder(fail=fail)
    with pytest.raises(errors.BuildError, match="%s broke" % fail):
        _customize(backend, fakes)
    assert backend.calls[backend.calls.index(fail) + 1:] == left_calls
    assert backend.alive == set()


def test_a_description_that_fails_discards_the_captured_image(fakes):
    """describe(image, ICICLE) runs after the capture, before the guest
    goes; when it fails the flow's reverts discard the image too."""
    backend, seen = Recorder(), []
    run = runner.Pipeline(backend, media.MediaCache(str(fakes)))
    result = run.customize_image(
        "base", TEMPLATE, {},
        describe=lambda image, icicle: seen.append((image, "hello" in icicle)))
    assert seen == [(result.image, True)]

    def refuse(image, icicle):
        raise errors.BuildError("Glance refused the properties")
    backend = Recorder()
    with pytest.raises(errors.BuildError, match="refused the properties"):
        runner.Pipeline(backend, media.MediaCache(str(fakes))).customize_image(
            "base", TEMPLATE, {}, describe=refuse)
    assert "capture_image" in backend.calls and backend.alive == set()


def test_customize_image_runs_finish_last_before_the_power_off(
        fakes, monkeypatch):
    from novaimagebuilder.guest import icicle

    def read_packages(session, *args):
        session.commands.append("read the ICICLE")
        return ["hello"]
    monkeypatch.setattr(icicle, "read_packages", read_packages)
    run = runner.Pipeline(Recorder(), media.MediaCache(str(fakes)))
    run.customize_image("base", TEMPLATE, {},
                        finish=("the clean-up", "rm -f /etc/x", 60))
    assert FakeSession.instances[0].commands == [
        "customized", "read the ICICLE", "rm -f /etc/x", "poweroff"]


# ---------------------------------------------------------------- host keys

def _host_keys_run(fakes, caplog, **parameters):
    import logging
    import yaml
    caplog.set_level(logging.DEBUG)
    backend, seen = Recorder(), []
    result = _run(backend, fakes, progress=lambda p, a: seen.append(a),
                  **parameters)
    session = FakeSession.instances[-1].kwargs
    config = yaml.safe_load(backend.user_data) if backend.user_data else None
    return result, seen, session, config


@pytest.mark.parametrize("choice", [None, "auto", "build"])
def test_the_guest_gets_the_builds_host_key_and_ssh_expects_it(
        fakes, caplog, choice):
    """auto (the default) and build: the customization server's user data
    is cloud-init's ssh_keys with a new Ed25519 key, the SSH check expects
    that key (build: that key only) and waits ssh_host_key_wait for the
    console; the private key appears nowhere else."""
    from novaimagebuilder.guest import hostkeys
    parameters = {"ssh_host_keys": choice} if choice else {}
    result, seen, session, config = _host_keys_run(
        fakes, caplog, ssh_host_key_wait=7, **parameters)
    keys = config["ssh_keys"]
    assert sorted(keys) == ["ed25519_private", "ed25519_public"]
    assert keys["ed25519_private"].startswith(
        "-----BEGIN OPENSSH PRIVATE KEY-----")
    assert keys["ed25519_public"].startswith("ssh-ed25519 ")
    assert session["build_keys"] == [keys["ed25519_public"].strip()]
    assert session["build_only"] is (choice == "build")
    assert session["key_grace"] == 7
    secret = keys["ed25519_private"].splitlines()[1]
    assert secret not in caplog.text
    assert secret not in repr(seen) + repr(result)
    assert hostkeys.line_fingerprint(keys["ed25519_public"]).startswith(
        "SHA256:")


def test_console_host_keys_give_no_user_data(fakes, caplog):
    _, _, session, config = _host_keys_run(fakes, caplog,
                                           ssh_host_keys="console")
    assert config is None
    assert session["build_keys"] == ()
    assert session["build_only"] is False
    assert session["key_grace"] == 60


def test_ssh_timeout_names_what_the_backend_limits(fakes):
    class Limited(Recorder):
        def ssh_limits(self, machine):
            return "the security group lets SSH in from 192.0.2.7/32 only"
    with pytest.raises(errors.BuildError) as caught:
        _run(Limited(), fakes, command_prefix="unreachable")
    assert str(caught.value).endswith(
        "not reachable: connection timed out (after 5 s) (the security "
        "group lets SSH in from 192.0.2.7/32 only)")

"""Test OS plugins: one that really writes image data, and some for matching."""
import time

from imgfac_nova import parameters
from imgfac_nova.plugins import base
from imgfac_nova.plugins import common
from novaimagebuilder import errors


def _info(targets, description):
    return base.PluginInfo(type="os", targets=targets, description=description,
                           maintainer="tests", version="1.0", license="Apache-2.0")


class TestOS(base.OSPlugin):
    """Writes ``size`` bytes of image data in steps; can fail or be slow."""

    info = _info((("TestOS", None, None),), "test OS plugin")
    parameters = (
        parameters.Parameter("size", "bytes of image data", type="int",
                             default=4096),
        parameters.Parameter("steps", "progress steps", type="int", default=3),
        parameters.Parameter("step_seconds", "seconds per step", type="float",
                             default=0.0),
        parameters.Parameter("fail_at", "step at which to fail", type="int"),
        parameters.Parameter("verbose_marker", "a flag", type="bool",
                             default=False),
        parameters.Parameter("token", "a secret", secret=True),
        parameters.Parameter("refuse", "check() refuses the build"),
        parameters.Parameter("fail_message", "what the failure at fail_at "
                             "says"),
        parameters.Parameter("activity", "what each step's progress says"),
        parameters.Parameter("timeout", "seconds the build may take, as a "
                             "cloud plugin's install timeout (unused)",
                             type="int"),
    ) + tuple(p for p in common.PIPELINE_PARAMETERS
              if p.name == "install_script")

    def check(self, template, parameters):
        if parameters.get("refuse"):
            raise errors.BuildError("the cloud says no: %s"
                                    % parameters["refuse"])

    def create_base_image(self, build, template, parameters):
        for step in range(parameters["steps"]):
            build.check_cancelled()
            if getattr(build, "checkpoint", None) and not build.checkpoint():
                raise errors.HandedBack()  # between two steps, as flows do
            if parameters.get("fail_at") == step:
                raise RuntimeError(parameters.get("fail_message") or
                                   "step %d exploded\nsecond line" % step)
            build.progress(100 * step // parameters["steps"],
                           parameters.get("activity") or "Step %d" % step)
            deadline = time.monotonic() + parameters["step_seconds"]
            while time.monotonic() < deadline:
                build.check_cancelled()
                time.sleep(0.01)
        with open(build.body_path, "wb") as handle:
            handle.write(b"\0" * parameters["size"])
        build.set_property("format", "raw")
        build.set_icicle("<icicle><packages><package name='%s'/></packages>"
                         "</icicle>" % template.name)
        build.set_property("os", template.os.name)


class AnyFedora(TestOS):
    info = _info((("Fedora", None, None),), "any Fedora")


class Fedora40(TestOS):
    info = _info((("Fedora", "40", "x86_64"), ("RHEL", None, None)),
                 "Fedora 40 on x86_64")


class Fedora40Again(TestOS):
    info = _info((("fedora", "40", "X86_64"),), "Fedora 40 again")


class NotAPlugin:
    """Declared as a plugin but is not one."""

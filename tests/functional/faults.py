"""Test-only fault injection: ``python -m tests.functional.faults ARGS...`` runs
the imgfac-nova command with a fault at one pipeline step.

The product has no such option. This wrapper patches
``BuildContext.progress`` (where every step of a base, target or provider
image reports) in its own process only; the environment says where (PERCENT
is optional):

- ``IMGFAC_TEST_FAULT=MODE:ACTIVITY@PERCENT`` -- when the build reports
  an activity starting with ACTIVITY (the start of a step, with everything
  earlier steps made in place; with PERCENT, once it is that far: inside the
  step, e.g. while qemu-img converts), MODE ``error`` raises a BuildError
  there, as a failing cloud or VM call does (once the test has seen the
  resources: after
  ``IMGFAC_TEST_FAULT_MARK`` is written, it waits up to a minute for
  ``MARK.go``); MODE ``pause`` writes the mark and waits until the build is
  cancelled, so the test can send SIGTERM, or kill -9, at that step.
- ``IMGFAC_TEST_CRASH_AFTER=create_server`` -- the process dies (as kill -9)
  as soon as Nova has answered its first server create: before the step
  that made it has saved its result.
"""
import os
import sys

INJECTED = "injected fault"


def install(spec, mark):
    from imgfac_nova import jobs
    from novaimagebuilder import errors
    from novaimagebuilder import waiter

    mode, _, prefix = spec.partition(":")
    prefix, _, at = prefix.partition("@")
    original = jobs.BuildContext.progress
    fired = []

    def progress(self, percent, activity):
        original(self, percent, activity)
        if fired or not activity.startswith(prefix) or \
                percent < int(at or 0):
            return
        fired.append(activity)
        with open(mark + ".tmp", "w") as handle:
            handle.write(activity)
        os.replace(mark + ".tmp", mark)
        if mode == "error":
            for _ in waiter.iterate(60, "waiting for the test"):
                if os.path.exists(mark + ".go"):
                    break
            raise errors.BuildError("%s at %d %%: %s"
                                    % (INJECTED, percent, activity))
        self.cancel_event.wait()
        raise errors.Cancelled()

    jobs.BuildContext.progress = progress


def crash_after(call):
    """Die as soon as the compute proxy's ``call`` has answered."""
    from openstack.compute.v2 import _proxy

    original = getattr(_proxy.Proxy, call)

    def answered(self, *args, **kwargs):
        original(self, *args, **kwargs)
        os._exit(9)

    setattr(_proxy.Proxy, call, answered)


if __name__ == "__main__":
    if "IMGFAC_TEST_FAULT" in os.environ:
        install(os.environ["IMGFAC_TEST_FAULT"],
                os.environ.get("IMGFAC_TEST_FAULT_MARK", os.devnull))
    if "IMGFAC_TEST_CRASH_AFTER" in os.environ:
        crash_after(os.environ["IMGFAC_TEST_CRASH_AFTER"])
    from imgfac_nova import cli
    sys.exit(cli.main())

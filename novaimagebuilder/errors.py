"""Exceptions of the build library. Every str() is one line an operator can act on."""


class BuildError(Exception):
    """A build step failed."""


class Gone(BuildError):
    """Something a build made earlier is not there any more."""


class Cancelled(BuildError):
    """The build was asked to stop (Ctrl-C, SIGTERM, a cancel request)."""

    def __init__(self, message="interrupted"):
        super().__init__(message)


class WaitTimeout(BuildError):
    """Something did not happen in time."""


class WaitFailed(BuildError):
    """Something being waited for reached a failure state."""


class HandedBack(BaseException):
    """The build stopped without undoing anything, for another process to
    go on with it: between two steps (its worker lost its claim or is
    stopping), or in a step before an action in the cloud (its claim
    lost). Not a failure: nothing is reverted. A BaseException, so that
    raised in a step it passes the handlers of failures (the step's and
    TaskFlow's, which would revert) and leaves the step running, as a
    killed process does: the next owner runs it again from its start."""

    def __init__(self, message="handed back"):
        super().__init__(message)

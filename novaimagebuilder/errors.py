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


class HandedBack(Exception):
    """The build stopped between two steps without undoing them, for
    another process to go on with it (its worker lost its claim or is
    stopping). Not a failure: nothing is reverted."""

    def __init__(self, message="handed back"):
        super().__init__(message)

"""What goes wrong talking to a guest over SSH, as one-line BuildErrors."""
import re

from novaimagebuilder import errors


class SSHError(errors.BuildError):
    """Something went wrong talking to the guest over SSH."""


class SSHTimeout(SSHError, errors.WaitTimeout):
    """The guest's SSH server did not become reachable in time."""


class SSHAuthError(SSHError):
    """The guest's SSH server keeps refusing our key."""


class HostKeyMismatch(SSHError):
    """The guest offered a host key other than the expected ones."""


class HostKeyUnverified(SSHError):
    """Policy "strict": the guest's console shows no host keys to check
    its key against."""


class KeysNotShownYet(HostKeyUnverified):
    """Policy "console": no keys on the console yet; retried until the
    grace period ends, then the first key is accepted."""


class JumpHostError(SSHError):
    """The jump host refused us or its host key (not retried)."""


class CommandTimeout(SSHError):
    """A command did not finish in time."""


class CommandFailed(SSHError):
    """A command exited with a non-zero status.

    ``name`` labels the command, ``status`` is its exit status and
    ``last_lines`` the end of its output; str() is one line naming all
    three, e.g. "command 'install packages' exited with status 100:
    E: Unable to locate package nosuchpkg".
    """

    _ERROR_LINE = re.compile(
        r"^(E:|Error|error|ERROR|fatal|FATAL|No match for argument|"
        r"Problem|No provider of|.*: (command )?not found$|.*No such file)")

    def __init__(self, name, status, last_lines):
        self.name = name
        self.status = status
        self.last_lines = list(last_lines)
        super().__init__(str(self))

    @property
    def reason(self):
        """The output line that best explains the failure ('' if none)."""
        lines = [line.strip() for line in self.last_lines if line.strip()]
        errors = [line for line in lines if self._ERROR_LINE.match(line)]
        return (errors or lines or [""])[-1]

    def __str__(self):
        text = f"command '{self.name}' exited with status {self.status}"
        return f"{text}: {self.reason}" if self.reason else text

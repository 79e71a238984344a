"""The rollback stack: every resource a build creates is pushed with its undo.

Temporary resources (servers, keypairs, security groups, overlays) are undone
when the build ends, however it ends. Results (the final image) are undone only
when the build fails. Undo runs in reverse order; one failing undo does not stop
the others.
"""
import logging

LOG = logging.getLogger(__name__)


class Rollback:
    """A stack of undo actions for one build."""

    def __init__(self, log=None):
        self._stack = []
        self.log = log or LOG

    def push(self, description, undo, result=False):
        """Remember how to undo ``description``; returns a handle for
        :meth:`undo_now`. ``result=True`` keeps it when the build succeeds."""
        entry = [description, undo, result]
        self._stack.append(entry)
        return entry

    def undo_now(self, entry):
        """Undo one entry now (e.g. a server deleted on the normal path)."""
        self._stack.remove(entry)
        self._undo(entry)

    def forget(self, entry):
        """Drop one entry without undoing it (it is no longer the build's,
        e.g. a JEOS now in the JEOS cache)."""
        self._stack.remove(entry)

    @property
    def pending(self):
        """Descriptions of what would be undone, newest first."""
        return [entry[0] for entry in reversed(self._stack)]

    def _undo(self, entry):
        description, undo, _ = entry
        try:
            undo()
            self.log.info("Removed %s", description)
            return None
        except Exception as exc:
            self.log.warning("Could not remove %s: %s", description, exc)
            return "%s: %s" % (description, exc)

    def unwind(self, succeeded, keep=False):
        """Undo temporary entries, and results too unless ``succeeded``.

        With ``keep`` (keep_on_failure) nothing is undone after a failure; what
        is kept is returned so it can be reported. Returns the list of entries
        left behind (kept or failed to undo), as one-line descriptions.
        """
        if not succeeded and keep:
            left = self.pending
            for description in left:
                self.log.warning("Kept %s for debugging (keep_on_failure)",
                                 description)
            self._stack.clear()
            return left
        left = []
        while self._stack:
            entry = self._stack.pop()
            if succeeded and entry[2]:
                continue
            failure = self._undo(entry)
            if failure:
                left.append(failure)
        return left

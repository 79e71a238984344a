"""Showing a build's progress on stderr: a live line on a terminal, plain lines
otherwise (logs, CI)."""
import sys


class Progress:
    """Prints an image's percent and activity when they change."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._last = None
        self._width = 0

    def __call__(self, record):
        shown = (record.identifier, record.status, record.percent_complete,
                 record.activity)
        if shown == self._last:
            return
        self._last = shown
        line = "%s %s %3d%% %s" % (record.type, record.identifier[:8],
                                   record.percent_complete, record.activity or "")
        if record.error:
            line += ": " + record.error
        if self.live:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self):
        """End a live line so later output starts on its own line."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

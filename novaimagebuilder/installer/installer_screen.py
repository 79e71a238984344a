"""What an installer shows on its serial console, as a person would read it.

Installers draw full-screen dialogs on the serial console (d-i's newt
dialogs inside GNU screen, anaconda's text mode): escape sequences, cursor
moves, line-drawing characters, and a status-line clock redrawn every
minute. ``render`` turns the console into the text of the screen (with
pyte, a VT100 terminal emulator); ``Watch`` follows it during an install:

- ``activity`` counts the distinct screen lines seen so far (clock times
  left out), so a redraw of the same screen is no activity;
- ``question`` is the question the installer waits at, if any: a d-i
  dialog marked ``[!!]`` (critical: asked even at priority=critical) or
  ``[?]``, or an anaconda text-mode prompt;
- ``stuck()`` returns it once it has stayed on the screen for ``grace``
  seconds, so a waiting installer is named long before any timeout.
"""
import re
import time

import pyte

COLUMNS, ROWS = 80, 24

#: Console lines enough to render the current screen from.
CONSOLE_LINES = 400

# Line-drawing characters as d-i sends them (DEC special graphics) and as
# Unicode.
_FRAME = re.compile(r"[lkmjtuwv]?q{2,}[lkmjtuwv]?|[┌┐└┘├┤─│┬┴┼]+")
_EDGE = re.compile(r"^\s*[x│]\s?|\s?[x│]\s*$")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b|\b[A-Z][a-z]{2} \d{2}\b")
_DI_TITLE = re.compile(r"\[(!!|\?)\]\s*(.*?)\s*(?:[tu├┤]q|[tu├┤]?─|$)")
_BUTTON = re.compile(r"<[A-Z][\w ]*>")
_ANACONDA_PROMPT = re.compile(
    r"(Please make a selection from the above.*|Please respond '\w+' or "
    r"'\w+'.*|.*[Pp]assword: *)$")


#: What is left of escape sequences in a console read through Nova's API,
#: which removes control characters (ESC and CR among them): "ESC[15;4H"
#: arrives as "[15;4H", "ESC(0" as "(0". A run of such remnants holding a
#: control sequence gets its ESCs back, and so does a "(0" before frame
#: characters that run into one ("(0tqqqk[6;3H").
_CSI_LEFT = r"\[(?:\?[0-9;]*[hl]|[0-9;]*[@A-HJKLMPSTXZdfghlmnrsu])"
_LEFT_RUN = re.compile(r"(?P<frame>\(0)(?=[jklmnqtuvwx]+%s)|(?:%s|\([0B])+"
                       % (_CSI_LEFT, _CSI_LEFT))
_LEFT_TOKEN = re.compile(r"%s|\([0B]" % _CSI_LEFT)


def with_escapes(console):
    """``console`` with the escape characters Nova's console API removed
    put back (a console that has any is left as it is)."""
    if "\x1b" in console:
        return console

    def restore(run):
        if not run.group("frame") and "[" not in run.group():
            return run.group()
        return _LEFT_TOKEN.sub(lambda token: "\x1b" + token.group(),
                               run.group())
    return _LEFT_RUN.sub(restore, console)


def render(console):
    """The screen the console text ends with, as ROWS lines of text."""
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.Stream(screen)
    # A bare line feed on a serial console also returns the carriage.
    stream.feed(with_escapes(console).replace("\r\n", "\n").replace(
        "\n", "\r\n"))
    return [line.rstrip() for line in screen.display]


def screen_text(console):
    """The screen as plain text: frames drawn with + - |, blank rows and
    trailing spaces removed (for logs)."""
    lines = [_FRAME.sub(lambda m: "-" * len(m.group()),
                        _EDGE.sub(lambda m: m.group().replace("x", "|"), line))
             for line in render(console)]
    return "\n".join(line for line in lines if line.strip())


_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-B]|[=>78DEHMc])"
                     r"|[\x00-\x08\x0e-\x1f]")


def plain_tail(console, lines):
    """The last ``lines`` non-empty console lines, escape sequences removed."""
    text = _ESCAPE.sub("", with_escapes(console)).replace(
        "\r\n", "\n").replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines()
            if line.strip()][-lines:]


def _unframe(line):
    return " ".join(_FRAME.sub(" ", _EDGE.sub("", line)).split())


def question(lines):
    """The question the rendered screen ``lines`` waits at, or None."""
    for row, line in enumerate(lines):
        match = _DI_TITLE.search(line)
        if match and match.group(2):
            body = []
            for below in lines[row + 1:]:
                if _BUTTON.search(below) or re.match(r"^\s*[mj└]", below):
                    break
                text = _unframe(below)
                if text:
                    body.append(text)
                elif body:
                    break  # the first paragraph says it
            text = " ".join(body)
            sentence = re.split(r"(?<=[.?!:])\s", text, maxsplit=1)[0]
            sentence = sentence.rstrip(".:")
            title = match.group(2).strip(" -")
            return "%s: %s" % (title, sentence) if sentence else title
    filled = [line.strip() for line in lines if line.strip()]
    if filled and _ANACONDA_PROMPT.match(filled[-1]):
        # Anaconda titles a text screen with the line under a row of "=".
        titles = [filled[i + 1] for i in range(len(filled) - 2)
                  if re.fullmatch(r"=+", filled[i])]
        prompt = filled[-1].rstrip(": ")
        return "%s: %s" % (titles[-1], prompt) if titles else prompt
    return None


class Watch:
    """Follows an installer's console; see the module docstring."""

    def __init__(self, grace=60.0, clock=time.monotonic):
        self.grace = grace
        self._clock = clock
        self._seen = set()
        self.question = None
        self._asked_since = None
        self._console = None
        self.lines = []

    @property
    def activity(self):
        return len(self._seen)

    def update(self, console):
        """Read the console (its recent tail is enough)."""
        if console == self._console:
            return self
        self._console = console
        self.lines = render(console)
        self._seen.update(_CLOCK.sub("", line) for line in self.lines)
        asked = question(self.lines)
        if asked != self.question:
            self.question = asked
            self._asked_since = self._clock()
        return self

    def stuck(self):
        """``waiting_at(question)`` once the question has been on the screen
        for ``grace`` seconds, else None."""
        if self.question and self._clock() - self._asked_since >= self.grace:
            return waiting_at(self.question)
        return None


def waiting_at(asked):
    """The one-line error for an installer waiting at a question."""
    return 'the installer is waiting at "%s"' % asked

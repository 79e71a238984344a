"""Reading an installer's screen from its serial console.

d-i-download-components.console is the serial console of Debian's real
network installer (bookworm netboot, our generated preseed in its initrd)
under QEMU on this project's test machines, stopped where the mirror lacks
an installer component.
"""
import pathlib

from novaimagebuilder.installer import installer_screen as screen

DI = (pathlib.Path(__file__).parent / "data" /
      "d-i-download-components.console").read_bytes().decode()

DIALOG = """\
  lqqqqqqqqqqqu [!!] Configure the network tqqqqqqqqqqqqk
  x                                                     x
  x Please enter the hostname for this system.          x
  x                                                     x
  x The hostname is a single word that identifies your  x
  x system to the network.                              x
  x                                                     x
  x Hostname:                                           x
  x                                                     x
  x debian_____________________________________________ x
  x                                                     x
  x     <Go Back>                          <Continue>   x
  x                                                     x
  mqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj
"""


def test_real_d_i_screen_is_rendered_and_its_question_found():
    lines = screen.render(DI)
    assert len(lines) == screen.ROWS
    assert screen.question(lines) == ("Download installer components: The "
                                      "installer failed to download a file "
                                      "from the mirror")
    text = screen.screen_text(DI)
    assert "[!!] Download installer components" in text
    assert "\x1b" not in text and "qqq" not in text


def test_dialog_question_is_title_and_first_sentence():
    assert screen.question(DIALOG.splitlines()) == (
        "Configure the network: Please enter the hostname for this system")


def test_question_is_the_first_paragraph():
    lines = ["lqqqqqu [!!] Choose a mirror of the Debian archive tqqqqk",
             "x                                                x",
             "x Bad archive mirror                             x",
             "x                                                x",
             "x An error has been detected while trying to use x",
             "x                                                x",
             "x     <Go Back>                     <Continue>   x"]
    assert screen.question(lines) == ("Choose a mirror of the Debian archive: "
                                      "Bad archive mirror")


def test_progress_screen_is_no_question():
    progress = DIALOG.replace("[!!] ", "")
    assert screen.question(progress.splitlines()) is None


def test_anaconda_prompt_is_a_question():
    lines = ["================================================================",
             "Root password", "", "Please select new root password. You "
             "will have to type it twice.", "", "Password: "]
    assert screen.question(lines) == "Root password: Password"


def test_clock_redraw_is_no_activity():
    watch = screen.Watch()
    watch.update(DI)
    before = watch.activity
    # GNU screen's status line redrawn a minute later: only the time moves.
    redraw = "\x1b[1;1H[            (1*installer)  2 shell  3 shell  4- " \
             "log           ][ Dec 01 10:31 ]"
    watch.update(DI + redraw)
    assert watch.activity == before
    watch.update(DI + "\x1b[20;3HRetrieving partman-base")
    assert watch.activity > before


def test_stuck_only_after_the_grace():
    now = [100.0]
    watch = screen.Watch(grace=60, clock=lambda: now[0])
    watch.update(DI)
    assert watch.question and watch.stuck() is None
    now[0] += 59
    watch.update(DI)
    assert watch.stuck() is None
    now[0] += 2
    assert watch.stuck() == ('the installer is waiting at "Download '
                             'installer components: The installer failed to '
                             'download a file from the mirror"')


def test_plain_tail_drops_escapes():
    tail = screen.plain_tail("\x1b[1mboot\x1b[0m\r\nok\r\n\r\n", 5)
    assert tail == ["boot", "ok"]


def nova_console(console):
    """The console as Nova's console-output API returns it: control
    characters removed, ESC and CR among them (its remove_re)."""
    import re
    return re.sub("[\x00-\x08\x0b-\x1f]", "", console)


def test_console_read_through_nova_is_rendered_the_same():
    read = nova_console(DI)
    assert "\x1b" not in read
    # Nova's API tails by lines: the last 400, as the Nova backend asks.
    read = "\n".join(read.split("\n")[-screen.CONSOLE_LINES:])
    assert screen.question(screen.render(read)) == screen.question(
        screen.render(DI))
    dialog = [line for line in screen.screen_text(DI).splitlines()
              if line.startswith("  |") or "[!!]" in line]
    assert len(dialog) > 10
    shown = screen.screen_text(read).splitlines()
    assert [line for line in shown if line in dialog] == dialog
    assert "(0" not in "".join(shown) and "[30m" not in "".join(shown)


def test_a_question_read_through_nova_stops_the_build():
    now = [0.0]
    watch = screen.Watch(grace=60, clock=lambda: now[0])
    watch.update(nova_console(DI))
    now[0] = 61
    assert watch.stuck() == (
        'the installer is waiting at "Download installer components: The '
        'installer failed to download a file from the mirror"')


def test_text_like_escape_remnants_is_left_as_it_is():
    text = ("[    0.000000] Linux version 6.1\n[  OK  ] Started x\n"
            "[!!] Configure (0x1f) [a-z] [1*installer] (Bookworm)\n")
    assert screen.with_escapes(text) == text
    assert screen.plain_tail(text, 3) == text.splitlines()
    # Remnants are restored only when the console has no ESC at all.
    assert screen.with_escapes("\x1b[1m[0m") == "\x1b[1m[0m"
    assert screen.with_escapes("a[1;2Hb(0lqk[0m(B") == \
        "a\x1b[1;2Hb\x1b(0lqk\x1b[0m\x1b(B"

"""What the console scripts (``imgfac-nova``, ``imgfac-nova-manage``,
``imgfac-nova-api``) share: the ``--config-file`` and ``--debug`` options,
and an error said in one line on stderr."""
import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser(prog, description):
    """An ArgumentParser with the options every console script has."""
    new = argparse.ArgumentParser(prog=prog, description=description)
    new.add_argument("--config-file", action="append", default=[],
                     metavar="PATH",
                     help="configuration file (default: "
                          "/etc/imgfac-nova/imgfac-nova.conf if present)")
    new.add_argument("--debug", action="store_true",
                     help="log everything, with tracebacks, to stderr")
    return new


def error(prog, message, code=EXIT_USAGE):
    """Print ``prog: error: message`` (its first line, credentials
    scrubbed) on stderr; returns ``code``, the exit status."""
    from novaimagebuilder import scrub
    lines = str(message).strip().splitlines() or [""]
    print("%s: error: %s" % (prog, scrub.scrub(lines[0].strip())),
          file=sys.stderr)
    return code

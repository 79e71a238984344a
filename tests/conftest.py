"""Wall time of each tier (unit, functional), printed at the end of a run."""
import time

_TIERS = {}  # tier -> [first start, last end]


def _tier(nodeid):
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def pytest_runtest_logstart(nodeid, location):
    _TIERS.setdefault(_tier(nodeid), [time.monotonic(), None])


def pytest_runtest_logfinish(nodeid, location):
    _TIERS[_tier(nodeid)][1] = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    if _TIERS:
        terminalreporter.write_line("wall time: " + ", ".join(
            "%s %.0f s" % (tier, end - start)
            for tier, (start, end) in _TIERS.items() if end))

"""How large a template may be: the TDL parser's limits, apart from the
parser (lxml, the grammar), so that the configuration's defaults do not
load it: commands that read no template start without it."""
from typing import NamedTuple


class Limits(NamedTuple):
    """How large a template may be."""

    max_bytes: int = 64 * 1024 * 1024
    max_elements: int = 200000


DEFAULT_LIMITS = Limits()


def too_large(limits):
    """The message for a template over ``limits.max_bytes``."""
    return (f"template is larger than {human_size(limits.max_bytes)} "
            "(the max_template_bytes option)")


def human_size(size):
    """``size`` bytes in the largest whole unit, with the bytes."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                         ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if size % factor == 0:
            return f"{size // factor} {unit} ({size} bytes)"
    return f"{size} bytes"

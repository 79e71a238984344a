"""How large a template may be: the TDL parser's limits, apart from the
parser (lxml, the grammar), so that the configuration's defaults do not
load it: commands that read no template start without it."""
from typing import NamedTuple


class Limits(NamedTuple):
    """How large a template may be."""

    max_bytes: int = 64 * 1024 * 1024
    max_elements: int = 200000


DEFAULT_LIMITS = Limits()

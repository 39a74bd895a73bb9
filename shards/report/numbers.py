"""How reports and comparisons write a number and an interval: one way, so that the Markdown, the pages and the
log lines agree. A value that does not exist (no sample scored, a statistic without enough data) is a dash, never
a zero or a NaN. Standard library only.
"""

from __future__ import annotations

MISSING = "–"


def number(value: float | None, digits: int = 3) -> str:
    """`value` with `digits` decimals, or a dash."""
    return MISSING if value is None else f"{value:.{digits}f}"


def interval(bounds: list[float] | None, digits: int = 2) -> str:
    """`[low, high]` with `digits` decimals, or a dash."""
    return MISSING if bounds is None else f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"

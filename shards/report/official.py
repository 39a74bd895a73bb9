"""The report's `official` section, as typed: a benchmark judged under its official protocol, its own leaderboard
tables (its columns, scale and rounding), each figure with the number of samples it rests on, and what the run
did not do as the benchmark's scorer does. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from shards.typed_data import Kind

Count = Annotated[int, Kind("a count (0 or more)", lambda v: isinstance(v, int) and not isinstance(v, bool)
                            and v >= 0)]


@dataclass(frozen=True, kw_only=True)
class OfficialCell:
    """One figure of a table."""

    value: float | None
    """The figure on the table's scale, in the benchmark's rounding (None: no scored sample behind it)."""
    n: Count
    """How many values it rests on (samples; KRIS-Bench's AVG: scores)."""


@dataclass(frozen=True, kw_only=True)
class OfficialRow:
    label: str
    """The row's name (a category, a split, a figure)."""
    cells: list[OfficialCell]
    """One per column."""


@dataclass(frozen=True, kw_only=True)
class OfficialTable:
    """One of the benchmark's own tables."""

    title: str
    """Its name."""
    columns: list[str]
    """Its columns, as the benchmark names them."""
    rows: list[OfficialRow]
    """Its rows."""
    left_out: Count
    """Samples of its scope with no score (unparsed or failed): in none of its figures, where the official scorers
    put a random integer (GEdit-Bench) or a zero (lmms-eval's ports)."""
    notes: list[str]
    """How its figures were made, where it is not plain."""


@dataclass(frozen=True, kw_only=True)
class OfficialSection:
    """The benchmark judged as its authors judge it (`score.protocol: official`)."""

    benchmark: str
    """gedit, risebench, kris or imgedit."""
    judge: str
    """The judge that answered (as its server reported it, where served)."""
    prompts_sha256: str
    """The benchmark's prompts judged with (`judge_prompts.json`)."""
    tables: list[OfficialTable]
    """Its tables."""
    warnings: list[str]
    """What makes these figures less comparable with the published ones (an unpinned hosted judge, say)."""

"""`sweep.json`, what a sweep's report writes for people and scripts, as one typed definition.

It lives with the launcher, not in `shards`: only the launcher writes and reads it, and no stage does. The figures
it holds come from the checkpoints' report.json files (`shards.report.schema.Report`), so it reuses their kinds
(counts, means and intervals on the judge's 0-10 scale). `write_sweep_report` checks what it writes against
`SweepReport`; `read_sweep` refuses a file of another `schema_version`. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from shards.report.schema import MAX_SCORE, Count, Interval, Mean
from shards.typed_data import Kind, check_schema_version, from_json, load_json, optional_key, to_data

SWEEP_SCHEMA_VERSION = 1
REWRITE_SWEEP = "write the sweep's report again: python3 -m launch sweep-report --output-dir <the sweep's folder>"


def _difference(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_SCORE <= value <= MAX_SCORE


Difference = Annotated[float | None, Kind("a number from -10 to 10, or null", lambda v: v is None or _difference(v))]
DifferenceInterval = Annotated[list[float] | None, Kind("null or [low, high] from -10 to 10", lambda v: v is None or (
    isinstance(v, list) and len(v) == 2 and all(map(_difference, v))))]
def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


Fraction = Annotated[float, Kind("a number from 0 to 1", _fraction)]
PValue = Annotated[float | None, Kind("a number from 0 to 1, or null", lambda v: v is None or _fraction(v))]


@dataclass(frozen=True, kw_only=True)
class Counts:
    """A checkpoint's samples, as its report counts them."""

    count: Count
    """Samples."""
    scored: Count
    """Of them, scored."""
    unparsed: Count
    """Of them, unparsed (a judge's answer held no score)."""
    failed: Count
    """Of them, failed (not edited, or no answer a score could be read from)."""


@dataclass(frozen=True, kw_only=True)
class CategoryFigures:
    """One category's mean in one checkpoint, as its report gives it."""

    mean: Mean
    """Mean score of its scored samples; None when none is."""
    mean_ci95: Interval
    """Its 95 % bootstrap interval."""
    counts: Counts
    """Its samples."""


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One checkpoint's run: where it is and its figures, from its report.json."""

    name: str
    """Its folder's name in the sweep folder."""
    step: int | None
    """The training step its name gives (`launch.sweep.order`), or None."""
    base: bool
    """Whether it is the base model (no adapter)."""
    report: str | None
    """Its report.html, relative to the sweep folder; None when its folder has none."""
    editor: str
    """Its editor, in one line (the report's `edit_model`)."""
    mean_over_samples: Mean
    """Mean score, every scored sample alike: the figure the best checkpoint is chosen by."""
    mean_over_samples_ci95: Interval
    """Its 95 % bootstrap interval."""
    mean_over_categories: Mean
    """The mean of the category means."""
    mean_over_categories_ci95: Interval
    """Its 95 % bootstrap interval."""
    counts: Counts
    """Its samples."""
    categories: dict[str, CategoryFigures]
    """Each category's figures (a category it has no sample of is absent)."""


@dataclass(frozen=True, kw_only=True)
class Figures:
    """A minus B over the samples both scored (`launch.compare.pairs.paired`)."""

    n: Count
    """Samples both scored."""
    mean_difference: Difference
    """The mean paired difference; None without a sample."""
    mean_difference_ci95: DifferenceInterval
    """Its 95 % paired bootstrap interval, resampled within categories."""
    p_value: PValue
    """Two-sided sign-flip permutation p-value."""
    wins: Count
    """Samples A scored higher."""
    ties: Count
    """Samples both scored the same."""
    losses: Count
    """Samples B scored higher."""


@dataclass(frozen=True, kw_only=True)
class Pair:
    """One checkpoint against the base model or its predecessor, as `launch compare` pairs two runs."""

    a: str
    """The checkpoint."""
    b: str
    """What it is measured against."""
    against: list[Literal["base", "previous"]]
    """Why the pair is in the report: B is the base model, the checkpoint before A, or both."""
    same_judging: bool
    """Whether the two runs' scores are on one scale (judge, its files, scoring mode, prompts)."""
    differences: list[str]
    """What differs in the two runs' judging; a pair whose judging differs is not compared."""
    same_data: bool
    """Whether a shared sample id is the same sample in both runs."""
    data_differences: list[str]
    """What differs in their data; a pair whose data differs is not compared."""
    refused: str | None = optional_key()
    """Why the pair was not compared."""
    note: str | None = optional_key()
    """Why there are no figures although the pair was compared (no sample scored by both)."""
    overall: Figures | None = optional_key()
    """The figures over every category."""
    categories: dict[str, Figures] | None = optional_key()
    """Each category's figures."""


@dataclass(frozen=True, kw_only=True)
class Best:
    """The checkpoint with the highest mean over samples, and how sure that is."""

    name: str | None
    """Its name; None when no checkpoint scored a sample."""
    runner_up: str | None
    """The checkpoint with the next highest mean; None with fewer than two scored checkpoints."""
    against_runner_up: Pair | None
    """Best minus runner-up, paired as every other pair."""
    distinguishable: bool | None
    """Whether the best is better than the runner-up: the paired interval above 0 and p < 0.05; None when the two
    could not be paired."""
    best_in_resamples: dict[str, Fraction] | None
    """Each checkpoint's share of the bootstrap resamples of the samples every checkpoint scored in which its mean
    is the highest (`shards.report.stats.best_fractions`); None when the checkpoints cannot all be paired."""
    samples_in_resamples: Count
    """The samples every checkpoint scored, which those resamples draw from."""
    statement: str
    """All of it in one sentence for a person."""


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """`sweep.json`: every checkpoint of a sweep in order, its paired differences, and the best of them."""

    schema_version: int = SWEEP_SCHEMA_VERSION
    """The version of this definition; a reader refuses another."""
    base: str | None
    """The base model's checkpoint name; None when the sweep has none."""
    order: Literal["step", "natural"]
    """How the checkpoints after the base are ordered: by the step their names give, or by natural sort."""
    judge: str
    """The judge of the base model's (else the first checkpoint's) run, with its scoring mode."""
    categories: list[str]
    """Every category of any checkpoint, in the first report's order."""
    checkpoints: list[Checkpoint]
    """Every checkpoint, in order."""
    pairs: list[Pair]
    """Each checkpoint against the base model and against its predecessor."""
    best: Best
    """The best checkpoint and how sure that is."""
    method: dict[str, str]
    """How the figures were computed, in words."""

    def to_json(self) -> dict[str, Any]:
        return to_data(self)


def checked(data: dict[str, Any], path: str) -> dict[str, Any]:
    """`data` as sweep.json holds it, checked against `SweepReport` (keys in the definition's order).

    Raises:
        SchemaError: naming the file and the key path of what does not match.
    """
    check_schema_version(data, path, SWEEP_SCHEMA_VERSION, REWRITE_SWEEP)
    return from_json(SweepReport, data, path).to_json()


def read_sweep(path: str) -> dict[str, Any]:
    """The sweep.json at `path`, checked against `SweepReport`.

    Raises:
        FileNotFoundError: if there is none.
        SchemaError: naming the file, and the key path of what does not match, or another schema_version.
    """
    return checked(load_json(path), path)

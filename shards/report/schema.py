"""`report.json`, what the score stage writes for people, scripts and `launch compare`, as one typed definition.

The score stage checks the report against `Report` as it writes it (`score_stage.report.write_report`), and
`launch compare` reads it through `read_report`, which refuses a report of another `schema_version`, or one
without, saying what to do. Each sample's result (`SampleResult`) is also what the score stage's journals record.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from shards.folder.run_record import Attempt
from shards.report.official import OfficialSection
from shards.report.record import PerStage, Provenance
from shards.typed_data import (JSON_FILE, MISSING, At, Kind, check_schema_version, from_json, load_json, optional_key,
                               to_data)

# The score stage's files in the output folder (listed here so that restarting the edit stage removes them too).
# thumbnails.json holds the page's images, so that `launch compare` can show them with the standard library alone.
REPORT_NAMES = ("report.json", "results.csv", "report.md", "report.html", "thumbnails.json")
REPORT_SCHEMA_VERSION = 1
REWRITE_REPORT = ("run the score stage again on its folder with the same config: it rewrites the report from the "
                  "judgements it recorded, judging nothing again")
MIN_SCORE, MAX_SCORE = 0, 10      # the judge's scale (score_stage.parsing); off it, differences can overflow to inf
STATUSES = ("ok", "unparsed", "failed")


def on_scale(value: Any) -> bool:
    """A number on the judge's scale (an integer of 400 digits is compared, never converted)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and MIN_SCORE <= value <= MAX_SCORE


Count = Annotated[int, Kind("a count (0 or more)", lambda v: isinstance(v, int) and not isinstance(v, bool)
                            and v >= 0)]
Mean = Annotated[float | None, Kind("a number from 0 to 10, or null", lambda v: v is None or on_scale(v))]
Interval = Annotated[list[float] | None, Kind("null or [low, high] from 0 to 10", lambda v: v is None or (
    isinstance(v, list) and len(v) == 2 and all(map(on_scale, v))))]


@dataclass(frozen=True, kw_only=True)
class Tokens:
    """Tokens a judge read and wrote."""

    prompt: Count
    """Tokens in: the prompt, pictures included."""
    completion: Count
    """Tokens out: the answer."""


@dataclass(frozen=True, kw_only=True)
class DimensionAnswer:
    """The judge's answer for one dimension of one sample."""

    score: float | None
    """The dimension's score; None when the answer held none (`generate` mode)."""
    distribution: list[float] | None = optional_key()
    """`expected` mode: P(score = s) for s = 0..10, renormalised over the valid scores."""
    valid_mass: float | None = optional_key()
    """`expected` mode: the probability the judge gave to valid scores at all."""
    response: str | None = optional_key()
    """`generate` mode: the judge's words."""
    failed: str | None = optional_key()
    """Why the answer holds no score it could be read from (empty, refused, blocked by a content filter)."""
    tokens: Tokens | None = optional_key()
    """What asking cost, in tokens."""


@dataclass(frozen=True, kw_only=True)
class SampleResult:
    """One sample's result, in the report and in the score stage's journals."""

    id: str
    """The sample's id."""
    category: str
    """Its category."""
    instruction: str
    """The edit instruction."""
    image_sha256: str | None = optional_key()
    """sha256 of the edited pixels judged (absent for a failed sample)."""
    score: float | None
    """The dimensions' scores combined; None unless `status` is ok."""
    status: Literal["ok", "unparsed", "failed"]
    """`ok`: scored; `unparsed`: a dimension's answer held no score; `failed`: the edit stage could not edit it, or
    the judge gave no answer a score could be read from (empty, refused, blocked)."""
    dimensions: dict[str, DimensionAnswer]
    """Each dimension's answer (none for a failed sample)."""
    response: str | None
    """`generate` mode: the judge's words, each dimension's after its name when there are several."""
    reason: str | None = optional_key()
    """Why the sample failed."""
    rank: int | None = optional_key()
    """The rank that judged it."""
    world_size: int | None = optional_key()
    """That run's ranks."""
    judge_seconds: float | None = optional_key()
    """Its share of its batches' time."""
    tokens: Tokens | None = optional_key()
    """Tokens the judge read and wrote for it, every dimension together."""
    original_sha256: str | None = optional_key()
    """sha256 of the original image file, so that `launch compare` pairs only the same samples (absent when the
    edit stage could not read it)."""

    @staticmethod
    def check_data(raw: dict[str, Any], at: At) -> None:
        """A scored sample's score is on the judge's scale; any other sample has none."""
        status = raw.get("status")
        if status not in STATUSES:
            raise at.key("status").expected(f"one of {', '.join(STATUSES)}", raw.get("status", MISSING))
        score = raw.get("score", MISSING)
        if status == "ok" and not on_scale(score):
            raise at.key("score").expected("a number from 0 to 10 for a scored sample", score)
        if status != "ok" and score is not None:
            raise at.key("score").expected(f"null for a sample with status '{status}'", score)


@dataclass(frozen=True, kw_only=True)
class DimensionStats:
    """One dimension's figures within a category."""

    scored: Count
    """Samples with a score for this dimension."""
    mean: Mean
    """Their mean."""
    mean_ci95: Interval
    """Its 95 % bootstrap interval."""


@dataclass(frozen=True, kw_only=True)
class CategoryStats:
    """One category's figures, over its scored samples only."""

    count: Count
    """Samples in the category."""
    scored: Count
    """Of them, scored."""
    unparsed: Count
    """Of them, unparsed."""
    failed: Count
    """Of them, failed (in the edit stage, or no answer a score could be read from)."""
    mean: Mean
    """Mean score of the scored samples (None when none is)."""
    mean_ci95: Interval
    """Its 95 % bootstrap interval."""
    min: Mean
    """Lowest score."""
    max: Mean
    """Highest score."""
    dimensions: dict[str, DimensionStats]
    """Each dimension's figures."""


@dataclass(frozen=True, kw_only=True)
class OverallDimension:
    """One dimension's figures over every category."""

    scored: Count
    """Samples with a score for this dimension."""
    mean_over_samples: Mean
    """Their mean, every sample alike."""
    mean_over_samples_ci95: Interval
    """Its 95 % bootstrap interval."""
    mean_over_categories: Mean
    """The mean of the categories' means."""
    mean_over_categories_ci95: Interval
    """Its 95 % bootstrap interval."""
    categories_in_mean: Count
    """Categories with a score for this dimension."""


@dataclass(frozen=True, kw_only=True)
class Overall:
    """Both averages, each with the number behind it (`score_stage.report.overall`)."""

    count: Count
    """Samples."""
    scored: Count
    """Of them, scored."""
    unparsed: Count
    """Of them, unparsed."""
    failed: Count
    """Of them, failed (in the edit stage, or no answer a score could be read from)."""
    mean_over_samples: Mean
    """Mean score, every scored sample alike (as lmms-eval's port of GEdit-Bench)."""
    mean_over_samples_ci95: Interval
    """Its 95 % bootstrap interval, samples resampled within their category."""
    mean_over_categories: Mean
    """The mean of the category means (as GEdit-Bench's official script)."""
    mean_over_categories_ci95: Interval
    """Its 95 % bootstrap interval."""
    categories_in_mean: Count
    """Categories with a scored sample."""
    min: Mean
    """Lowest score."""
    max: Mean
    """Highest score."""
    dimensions: dict[str, OverallDimension]
    """The same for each dimension."""
    tokens: Tokens | None = optional_key()
    """Tokens the judge read and wrote for every sample judged (those judged in earlier attempts included)."""


@dataclass(frozen=True, kw_only=True)
class Bootstrap:
    """How the intervals were drawn."""

    resamples: int
    """Bootstrap resamples."""
    seed: int
    """Their seed: the same scores always give the same intervals."""
    level: float
    """The intervals' level."""
    method: str
    """In words."""


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """The judge's agreement with the human ratings over `n` samples (None where `n` is too small)."""

    n: int
    """Scored samples with a human rating."""
    spearman: float | None
    """Spearman's rho."""
    kendall_tau_b: float | None
    """Kendall's tau-b."""
    pairwise_accuracy: float | None
    """Share of the pairs the judge orders as the humans do."""


@dataclass(frozen=True, kw_only=True)
class HumanAgreement:
    """Agreement with the dataset's human ratings (`score.human_score_key`)."""

    overall: Agreement
    """Over every category."""
    categories: dict[str, Agreement]
    """Per category."""


@dataclass(frozen=True, kw_only=True)
class Report:
    """`report.json`: every sample's result and the statistics over them, with what produced them."""

    schema_version: int = REPORT_SCHEMA_VERSION
    """The version of this definition; a reader refuses another."""
    edit_model: str
    """The editor, in one line (the manifest's `model.label`)."""
    judge_model: str
    """The judge's hub id or folder."""
    scoring_mode: Literal["expected", "generate"]
    """How scores were read."""
    record: Provenance | None = optional_key()
    """What makes the scores reproducible. A report without it is compared with its data named as not recorded."""
    world_size: PerStage[int]
    """Ranks of each stage's last attempt."""
    attempts: PerStage[list[Attempt]]
    """Every attempt of each stage on this folder (their run records')."""
    versions: PerStage[dict[str, str]]
    """Python's and the result-deciding packages' versions in each stage's environment."""
    elapsed_s: PerStage[float]
    """Wall-clock seconds of each stage's attempts together."""
    config: dict[str, Any]
    """The resolved config, as `shards.config.to_dict` writes it (its definition: `shards.config_schema`)."""
    categories: dict[str, CategoryStats]
    """Each category with a sample, in the config's order."""
    overall: Overall
    """Both averages over every category."""
    samples: list[SampleResult]
    """Every sample's result, in the manifest's order."""
    bootstrap: Bootstrap
    """How the intervals were drawn."""
    human_agreement: HumanAgreement | None = optional_key()
    """Agreement with the human ratings, when the dataset has them."""
    official: OfficialSection | None = optional_key()
    """The benchmark's own tables, when judged under its official protocol (`score.protocol: official`)."""

    @classmethod
    def from_json(cls, data: Any, path: str) -> Report:
        """The report in `data`, read from (or about to be written to) file `path`.

        Raises:
            SchemaError: naming the key path of what does not match, or another schema_version, or a sample
                listed twice or of a category the report does not list.
        """
        check_schema_version(data, path, REPORT_SCHEMA_VERSION, REWRITE_REPORT)
        report = from_json(cls, data, path)
        first: dict[str, int] = {}
        for i, sample in enumerate(report.samples):
            at = At(path, f"samples[{i}]", JSON_FILE)
            if sample.category not in report.categories:     # the pairs' figures are summed per category
                raise at.key("category").error(f"{JSON_FILE.show(sample.category)} is not one of the report's "
                                               f"categories ({', '.join(report.categories)})")
            if sample.id in first:
                raise at.key("id").error(f"{JSON_FILE.show(sample.id)} appears twice "
                                         f"(first at samples[{first[sample.id]}])")
            first[sample.id] = i
        return report

    def to_json(self) -> dict[str, Any]:
        return to_data(self)


def read_report(path: str) -> dict[str, Any]:
    """The report.json at `path` as JSON data, checked against `Report`.

    Raises:
        FileNotFoundError: if there is none.
        SchemaError: naming the file, and the key path of what does not match.
    """
    return Report.from_json(load_json(path), path).to_json()

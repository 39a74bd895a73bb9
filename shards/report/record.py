"""The `record` of report.json, as typed: what makes the scores reproducible (the dataset file, editor, judge,
prompts' digests and decoding settings, seeds, the tool's version and both environments), and `PerStage`, a value
for each stage. `launch compare` reads the judge's, the prompts' and the dataset's to tell whether two runs' scores
are on one scale and of the same samples. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from shards.config_schema import CombineRule, ImagesShown
from shards.manifest import EditorRecord, ToolVersion
from shards.typed_data import optional_key

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class PerStage(Generic[T]):
    """One value for each stage."""

    edit: T
    """The edit stage's."""
    score: T
    """The score stage's."""


@dataclass(frozen=True, kw_only=True)
class DimensionPrompts:
    """The digests of one dimension's prompts."""

    images: ImagesShown
    """What the judge saw: the edited image, or the original and the edited image."""
    system_prompt_sha256: str
    """sha256 of the system prompt."""
    user_prompt_template_sha256: str
    """sha256 of the user prompt template."""


@dataclass(frozen=True, kw_only=True)
class CategoryJudging:
    """How one category was judged."""

    combine: CombineRule | None
    """How several dimensions' scores made the sample's."""
    dimensions: dict[str, DimensionPrompts]
    """Each dimension's prompts, by their digests."""


@dataclass(frozen=True, kw_only=True)
class JudgingRecord:
    """What decides how a score is read: two runs' scores are on one scale only if these agree
    (`shards.runtime.provenance.judging_record`)."""

    mode: Literal["expected", "generate"]
    """`expected`: the probability-weighted score; `generate`: the score read from the judge's words."""
    answer_prefix: str
    """Where the score begins in the answer."""
    max_new_tokens: int
    """Longest answer (`generate` mode)."""
    do_sample: bool
    """Whether the judge sampled (never: greedy decoding)."""
    batch_size: int
    """Queries in one forward batch (a batch's padding can move a score in its last digits)."""
    dtype: str
    """The judge's weights' dtype."""
    image_max_side: int | None = optional_key()
    """The longest side of every picture the judge saw (None: as they were)."""
    prompts: dict[str, CategoryJudging]
    """Each category's prompts, by their digests."""
    prompts_sha256: str
    """One digest of every prompt setting (the official protocol: of the benchmark's prompts)."""
    protocol: Literal["open", "official"] | None = optional_key()
    """`official`: judged as the benchmark's authors judge it (absent: the open protocol)."""
    official_prompts: dict[str, Any] | None = optional_key()
    """The official protocol: the benchmark, its prompts' sha256, and each file they were read from (path, sha256,
    names, git commit) in the user's copy (`shards.judge_prompts`)."""


@dataclass(frozen=True, kw_only=True)
class JudgeRecord:
    """The judge: its checkpoint, and where it ran."""

    model: str
    """Hub id or local folder (a served judge: the model asked for)."""
    revision: str | None
    """The hub snapshot's commit; None for a local folder."""
    fingerprint: str | None
    """sha256 over the local folder's files; None for a hub id."""
    backend: Literal["transformers", "server"] = optional_key()
    """In each score rank's process, or behind a server."""
    server_host: str | None = optional_key()
    """A served judge's host (the launcher's vLLM on each node: its own host)."""
    served_model: str | None = optional_key()
    """The model the server said it served (a hosted API's dated snapshot, say)."""


@dataclass(frozen=True, kw_only=True)
class DatasetRecord:
    """The benchmark file the samples came from."""

    path: str
    """The dataset JSONL file."""
    sha256: str
    """Its sha256 when the edit stage started."""


@dataclass(frozen=True, kw_only=True)
class Seeds:
    """Where the randomness came from."""

    edit: int | None
    """The editor's base seed (None for imported edits)."""
    per_sample: str
    """How each sample's seed derives from it."""
    judge: str
    """The judge's (none: greedy decoding)."""


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What makes the scores reproducible (`score_stage.outputs.run_record`)."""

    dataset: DatasetRecord | None = optional_key()
    """The dataset file. A report without it cannot show its samples are another's: `launch compare` refuses to
    pair it, naming it."""
    editor: EditorRecord
    """Who made the edits (the manifest's `model`)."""
    judge: JudgeRecord
    """The judge."""
    judging: JudgingRecord
    """How its answers became scores."""
    seeds: Seeds
    """The seeds."""
    tool: PerStage[ToolVersion]
    """This tool's version in each stage."""
    environments: PerStage[dict[str, str]]
    """Every package installed in each stage's environment, by name."""

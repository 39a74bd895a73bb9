"""`judge_prompts.json`: a benchmark's own judge prompts, as `import-benchmark` read them from the user's copy of
the benchmark (never from this repository), written beside the imported dataset; the `official` protocol
(`score.protocol`) judges with them.

Each prompt is kept under its name in the benchmark's code (a Python constant, a JSON key), with each source
file's sha256 and the commit of the checkout it came from, and one sha256 over all the prompts, which the run's
identity and record hold: runs judged with other prompt versions are not mixed on resume, and `launch compare`
says they are not on one scale. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from shards.typed_data import SchemaError, check_schema_version, from_json, load_json, to_data

JUDGE_PROMPTS = "judge_prompts.json"
JUDGE_PROMPTS_SCHEMA_VERSION = 1
BENCHMARKS = ("gedit", "risebench", "kris", "imgedit")


@dataclass(frozen=True, kw_only=True)
class PromptSource:
    """One file the prompts were read from."""

    path: str
    """The file, relative to the source given to `import-benchmark`."""
    sha256: str
    """Its content's sha256."""
    names: list[str]
    """The prompts read from it: constant names (Python) or keys (JSON)."""
    commit: str | None
    """The git commit of the checkout holding it (None: not a git checkout)."""


@dataclass(frozen=True, kw_only=True)
class JudgePrompts:
    """A benchmark's judge prompts, by their names in its own code."""

    schema_version: int = JUDGE_PROMPTS_SCHEMA_VERSION
    """The version of this definition; a reader refuses another."""
    benchmark: str
    """gedit, risebench, kris or imgedit."""
    prompts: dict[str, str]
    """Each prompt's text, as the benchmark's code holds it (placeholders unfilled)."""
    sources: list[PromptSource]
    """Where they were read."""
    sha256: str
    """sha256 over the prompts (`prompts_digest`)."""


def prompts_digest(prompts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(prompts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def judge_prompts_path(dataset_path: str) -> str:
    """Where the imported dataset at `dataset_path` keeps its benchmark's prompts."""
    return os.path.join(os.path.dirname(os.path.abspath(dataset_path)), JUDGE_PROMPTS)


def read_judge_prompts(path: str) -> JudgePrompts:
    """The prompts file at `path`, checked: its definition, a known benchmark, and a digest matching its prompts
    (an edited file would be recorded as the prompts it no longer holds).

    Raises:
        FileNotFoundError: if there is none.
        SchemaError: naming the file and what does not match.
    """
    data = load_json(path)
    check_schema_version(data, path, JUDGE_PROMPTS_SCHEMA_VERSION, "import the benchmark again")
    found = from_json(JudgePrompts, data, path)
    if found.benchmark not in BENCHMARKS:
        raise SchemaError(f"{path}: benchmark '{found.benchmark}' has no official protocol ({', '.join(BENCHMARKS)})")
    if prompts_digest(found.prompts) != found.sha256:
        raise SchemaError(f"{path}: its prompts do not match its sha256 (edited after the import?): import the "
                         "benchmark again")
    return found


def to_json(prompts: JudgePrompts) -> dict:
    return to_data(prompts)

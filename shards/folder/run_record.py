"""`<output>/progress/<stage>.json`, a stage's run record, as one typed definition: what the run is, one entry per
attempt, and the files the stage wrote outside its journals (`shards.folder.records` keeps it). The manifest and
the report copy its attempts.

Standard library only: the launcher reads it before any environment exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shards.typed_data import check_schema_version, from_json, optional_key, to_data

RUN_RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class RankWork:
    """What one rank did in one attempt."""

    rank: int
    """The rank."""
    samples: int
    """Samples it edited or judged."""
    busy_s: float
    """Seconds it spent editing or judging them."""
    load_s: float
    """Seconds it spent loading its model (in a sweep: loading it and moving it between checkpoints, shared by
    the sweep's runs)."""
    editor_loads: int | None = None
    """Edit stage: how often the rank loaded an editor afresh in this launch (a sweep's runs share it: once)."""
    editor_swaps: int | None = None
    """Edit stage: how often it moved the editor to another checkpoint (LoRA swap, fine-tune components)."""


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One start of a stage on the folder: recorded as it begins, completed as it ends (a killed attempt keeps
    only what it recorded when it began)."""

    started: str
    """When it began, local time (ISO 8601 with the offset)."""
    world_size: int
    """Its ranks."""
    follows_edits: bool | None = optional_key()
    """Score stage: it judged beside the edit stage (`--follow-edits`)."""
    done_before: int | None = optional_key()
    """Samples earlier attempts had done, which it kept."""
    to_do: int | None = optional_key()
    """Samples it set out to do (absent when following the edits: they are not known at the start)."""
    edited: int | None = optional_key()
    """Edit stage: samples it edited or imported."""
    judged: int | None = optional_key()
    """Score stage: samples it judged."""
    elapsed_s: float | None = optional_key()
    """Its wall-clock seconds."""
    ranks: list[RankWork] | None = optional_key()
    """Each rank's share (absent for imported edits: one process)."""


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """`progress/<stage>.json`: a stage's run in the folder, across its attempts."""

    schema_version: int = RUN_RECORD_SCHEMA_VERSION
    """The version of this definition. A record without one was written before records had a version, with
    these very fields, and reads as version 1."""
    identity: dict[str, Any]
    """What the run is: the settings, dataset and model fingerprints that decide the stage's results, flat
    (`shards.folder.identity`); a resumed run must match it."""
    attempts: list[Attempt]
    """Every start of the stage on this folder, in order."""
    outputs: list[str]
    """The files outside the journals the stage claimed before writing them, relative to the output folder."""

    @classmethod
    def from_json(cls, data: Any, path: str) -> RunRecord:
        """The record in `data`, read from file `path`.

        Raises:
            SchemaError: naming the key path of what does not match, or another schema_version.
        """
        if isinstance(data, dict) and "schema_version" not in data:
            data = {"schema_version": 1, **data}
        check_schema_version(data, path, RUN_RECORD_SCHEMA_VERSION, "its run cannot be resumed by this version")
        return from_json(cls, data, path)

    def to_json(self) -> dict[str, Any]:
        return to_data(self)

"""A run's records in its output folder, and what a restart may remove: only the files the tool wrote.

`<output>/progress/<stage>.json` is the stage's run record (`shards.folder.run_record`): its identity (see
`shards.folder.identity`), one entry per attempt, and the files outside the journals that the stage wrote. The
rank journals (`progress/<stage>-rNNNNN-of-NNNNN.jsonl`) list the shard parts the edit stage wrote. Together they
say which files in the folder are the tool's: `--restart` removes those and nothing else, and refuses, before
removing anything, a folder where it would have to delete a file they do not account for. Standard library only:
the launcher uses it before any environment exists.
"""

from __future__ import annotations

import glob
import os
import re
import time
from typing import Any

from shards.events import STAGES
from shards.files import atomic_write_json
from shards.folder.run_record import RUN_RECORD_SCHEMA_VERSION, RunRecord
from shards.journal import PROGRESS_DIR, journal_paths, read_journals
from shards.manifest import MANIFEST_NAME
from shards.report.schema import REPORT_NAMES
from shards.store import SHARDS_DIR
from shards.typed_data import SchemaError, load_json

# A value that may be unknown when a run starts (a model folder built on first use, a hub id) and filled in by a
# later attempt; every other identity value, null included, is compared as it is.
FINGERPRINT_SUFFIX = " files fingerprint"
REPORTED_SUFFIX = " as the server reports it"     # a served judge's model: known once the server answers
ALLOWED_SUFFIX = " as the server allows it"       # how a served judge's scores are read: settled by its probe


def discovered(key: str) -> bool:
    """An identity value that may be unknown when a run starts (a checkpoint not on disk yet, a server not up yet)
    and is filled in by a later attempt: null there means "not known", not a value."""
    return key.endswith((FINGERPRINT_SUFFIX, REPORTED_SUFFIX, ALLOWED_SUFFIX))
# What `atomic_write` leaves behind when it is killed between writing and renaming.
_TEMPORARY = r"\.tmp-\d+-[0-9a-f]{8}"
_PART = re.compile(rf"{SHARDS_DIR}/edit-r(\d{{5}})-of-(\d{{5}})-p\d{{4,}}\.safetensors(?:{_TEMPORARY})?")
SHOWN = 10


class ResumeError(ValueError):
    """An output folder that cannot be resumed or restarted as asked; the message names what is in the way."""


def record_path(output_dir: str, stage: str) -> str:
    return os.path.join(output_dir, PROGRESS_DIR, f"{stage}.json")


def read_record(output_dir: str, stage: str) -> dict[str, Any] | None:
    """The stage's run record in `output_dir` as JSON data, checked against `RunRecord`, or None if the stage never
    started there.

    Raises:
        ResumeError: if the record cannot be read as a `RunRecord`, saying to start the stage over.
    """
    path = record_path(output_dir, stage)
    try:
        return RunRecord.from_json(load_json(path), path).to_json()
    except FileNotFoundError:
        return None
    except SchemaError as e:
        raise ResumeError(f"{e}; run with --restart to start this stage over") from None


def _write_record(output_dir: str, stage: str, record: dict[str, Any]) -> None:
    """Write the run record atomically, checked against `RunRecord` first."""
    path = record_path(output_dir, stage)
    atomic_write_json(path, RunRecord.from_json(record, path).to_json())


def begin_attempt(output_dir: str, stage: str, identity: dict[str, Any], **facts: Any) -> None:
    """Record the identity and a new attempt with `facts` (world size, samples done and to do).

    The first attempt records the whole identity; a later one only fills in a fingerprint that was not known
    before. Anything else recorded stays as it is, null included.
    """
    record = read_record(output_dir, stage) or {"schema_version": RUN_RECORD_SCHEMA_VERSION, "identity": identity,
                                                "attempts": [], "outputs": []}
    for key, value in identity.items():
        if discovered(key) and record["identity"].get(key) is None:
            record["identity"][key] = value
    record["attempts"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **facts})
    _write_record(output_dir, stage, record)


def end_attempt(output_dir: str, stage: str, outputs: tuple[str, ...] | list[str] = (),
                **facts: Any) -> list[dict[str, Any]]:
    """Add `facts` (e.g. elapsed time) to the last attempt and claim `outputs`, the files (relative to the output
    folder) the stage is about to write; returns every attempt so far. Claimed first and written second, so a
    file of the stage is always accounted for."""
    record = read_record(output_dir, stage)
    record["attempts"][-1].update(facts)
    record["outputs"] = sorted(set(record["outputs"]) | set(outputs))
    _write_record(output_dir, stage, record)
    return record["attempts"]


def _relative(output_dir: str, path: str) -> str:
    return os.path.relpath(path, output_dir).replace(os.sep, "/")


def stage_files(output_dir: str, stage: str) -> list[str]:
    """The files present where `stage` writes (relative paths), whoever wrote them."""
    exact = [f"{PROGRESS_DIR}/{stage}.json"]
    exact += [MANIFEST_NAME] if stage == "edit" else list(REPORT_NAMES)
    found = [name for name in exact if os.path.lexists(os.path.join(output_dir, name))]
    for name in exact:
        found += [_relative(output_dir, p) for p in glob.glob(os.path.join(output_dir, glob.escape(name) + ".tmp-*"))
                  if re.fullmatch(re.escape(name) + _TEMPORARY, _relative(output_dir, p))]
    found += [_relative(output_dir, p) for p in journal_paths(output_dir, stage)]
    if stage == "edit":
        for folder, subfolders, files in os.walk(os.path.join(output_dir, SHARDS_DIR)):
            links = [d for d in subfolders if os.path.islink(os.path.join(folder, d))]   # removed as links
            found += [_relative(output_dir, os.path.join(folder, f)) for f in files + links]
    return sorted(found)


def owned_files(output_dir: str, stage: str) -> set[str]:
    """The files the stage's records say the tool wrote: the record, the journals, the claimed outputs (and
    their temporary files), and for the edit stage every shard part of a rank that has a journal, recorded or
    not (a part renamed into place just before a kill is never recorded)."""
    record = read_record(output_dir, stage)
    if record is None:
        return set()
    journals = journal_paths(output_dir, stage)
    owned = {f"{PROGRESS_DIR}/{stage}.json", *(_relative(output_dir, j) for j in journals)}
    claimed = set(record["outputs"])
    owned |= {f for f in stage_files(output_dir, stage) if f in claimed or
              any(re.fullmatch(re.escape(c) + _TEMPORARY, f) for c in claimed | {f"{PROGRESS_DIR}/{stage}.json"})}
    if stage == "edit":
        owned |= {part["path"] for part in read_journals(journals).records if isinstance(part.get("path"), str)}
        writers = {re.search(r"-r(\d{5})-of-(\d{5})\.jsonl$", j).groups() for j in journals}
        owned |= {f for f in stage_files(output_dir, stage) if (m := _PART.fullmatch(f)) and m.groups() in writers}
    return owned


def unowned_files(output_dir: str, stages: tuple[str, ...] | list[str]) -> list[str]:
    """Files where `stages` write that their records do not account for (another program's, or a person's)."""
    foreign = []
    for stage in stages:
        owned = owned_files(output_dir, stage)
        foreign += [f for f in stage_files(output_dir, stage) if f not in owned]
    return sorted(foreign)


def _listing(files: list[str]) -> str:
    more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
    return ", ".join(files[:SHOWN]) + more


def check_fresh(output_dir: str, stage: str) -> None:
    """Refuse to start `stage` in a folder where it would write over files it did not write.

    Raises:
        ResumeError: naming those files.
    """
    foreign = unowned_files(output_dir, [stage])
    if foreign:
        raise ResumeError(f"{output_dir} holds files that this tool did not write where the {stage} stage writes: "
                          f"{_listing(foreign)}. Move them away, or choose another output directory.")


def check_restartable(output_dir: str, stage: str) -> None:
    """Refuse a restart of `stage` that would have to delete files the records do not account for.

    Raises:
        ResumeError: naming those files, and saying whether the folder holds a run of this tool at all.
    """
    foreign = unowned_files(output_dir, STAGES[STAGES.index(stage):])
    if foreign:
        holds_run = any(read_record(output_dir, s) is not None for s in STAGES)
        what = ("holds no run of this tool" if not holds_run else
                "holds files that this run's records do not account for")
        raise ResumeError(f"{output_dir} {what}, where --restart would delete: {_listing(foreign)}; nothing was "
                          "removed. Move those files away, or choose another output directory.")


def restart(output_dir: str, stage: str) -> list[str]:
    """Remove `stage`'s files and those computed from them (the edit stage's include the score stage's), and
    nothing else: logs, the config and any file the records do not account for are kept.

    Returns:
        The removed paths, relative to `output_dir`.

    Raises:
        ResumeError: before removing anything, as `check_restartable`.
    """
    check_restartable(output_dir, stage)
    removed = [f for s in STAGES[STAGES.index(stage):] for f in stage_files(output_dir, s)]
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    _remove_empty_folders(os.path.join(output_dir, SHARDS_DIR))
    return removed


def _remove_empty_folders(top: str) -> None:
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        if not os.listdir(folder):
            os.rmdir(folder)

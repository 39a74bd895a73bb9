"""What a run is, so that a resumed run never mixes its work with another's.

`<output>/progress/<stage>.json` records the stage's identity (the settings that change its results, the dataset
file's digest, the model folder's fingerprint) and one entry per attempt. Running a stage again on the same folder
resumes only if the identity is unchanged; otherwise it is refused with every difference named, and `--restart`
discards that stage's outputs (and those derived from them) to start over. Standard library only: the launcher
checks both stages before it builds any environment.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Any

from shards.config import RunConfig
from shards.journal import PROGRESS_DIR
from shards.store import MANIFEST_NAME, REPORT_NAMES, SHARDS_DIR, atomic_write_json, sha256_file

STAGES = ("edit", "score")
# Settings that change how a stage runs, not what it produces: a resumed run may change them freely.
OPERATIONAL = {
    "edit": ("env", "build_tiny", "samples_per_shard", "trust_remote_code"),
    "score": ("env", "build_tiny", "batch_size", "trust_remote_code"),
}
# What `--restart` of a stage removes: its own outputs and everything computed from them.
OUTPUTS = {
    "score": (*REPORT_NAMES, f"{PROGRESS_DIR}/score.json", f"{PROGRESS_DIR}/score-r*.jsonl"),
    "edit": (SHARDS_DIR, MANIFEST_NAME, f"{PROGRESS_DIR}/edit.json", f"{PROGRESS_DIR}/edit-r*.jsonl"),
}


class ResumeError(ValueError):
    """An output folder holding work of a different run; the message names every difference."""


def run_identity(config: RunConfig, stage: str) -> dict[str, Any]:
    """The settings, model and (for the edit stage) dataset that decide a stage's results, as flat JSON data."""
    settings = dataclasses.asdict(getattr(config, stage))
    identity = {f"{stage}.{k}": v for k, v in settings.items() if k not in OPERATIONAL[stage]}
    identity[f"{stage}.model files fingerprint"] = model_fingerprint(settings["model"])
    if stage == "edit":
        identity["dataset file sha256"] = sha256_file(config.dataset.path)
    return identity


def model_fingerprint(model: str) -> str | None:
    """A digest of a local checkpoint folder: every file's path and size, and the text of its JSON files.

    Cheap (no weights are read) and enough to notice a checkpoint replaced by another. None for a hub id, whose
    files are not on disk before it loads.
    """
    if not os.path.isdir(model):
        return None
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(model):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))  # e.g. a builder's staging folder
        for name in sorted(f for f in files if not f.startswith(".")):
            path = os.path.join(folder, name)
            digest.update(f"{os.path.relpath(path, model)}\0{os.path.getsize(path)}\0".encode())
            if name.endswith(".json"):
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def record_path(output_dir: str, stage: str) -> str:
    return os.path.join(output_dir, PROGRESS_DIR, f"{stage}.json")


def read_record(output_dir: str, stage: str) -> dict[str, Any] | None:
    """The stage's run record in `output_dir`, or None if the stage never started there."""
    try:
        with open(record_path(output_dir, stage), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ResumeError(f"{record_path(output_dir, stage)}: not valid JSON ({e}); "
                          "run with --restart to start this stage over") from None


def check_identity(output_dir: str, stage: str, identity: dict[str, Any]) -> None:
    """Refuse to resume `stage` in `output_dir` if its recorded identity differs from `identity`.

    Raises:
        ResumeError: listing each differing setting with its recorded and current value.
    """
    record = read_record(output_dir, stage)
    if record is None:
        return
    before = record.get("identity", {})
    # None is "not known" (a model folder that a demo builds on first use, a hub id): it differs from nothing.
    differences = [f"{key}: was {_short(before.get(key))}, now {_short(identity.get(key))}"
                   for key in sorted(set(before) | set(identity))
                   if before.get(key) != identity.get(key) and None not in (before.get(key), identity.get(key))]
    if differences:
        raise ResumeError(
            f"{output_dir} holds {stage} work of a different run, and the two are not mixed:\n  "
            + "\n  ".join(differences)
            + f"\nTo discard its {stage} work and start over, run again with --restart (the launcher: --restart "
              f"{stage}), or choose another output directory."
        )


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def restart(output_dir: str, stage: str) -> list[str]:
    """Remove `stage`'s outputs and those derived from them (the edit stage's include the score stage's).

    Returns:
        The removed paths, relative to `output_dir`. Logs and the config are kept.
    """
    removed = []
    for owner in STAGES[STAGES.index(stage):]:
        for pattern in OUTPUTS[owner]:
            for path in sorted(glob.glob(os.path.join(output_dir, pattern))):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                removed.append(os.path.relpath(path, output_dir))
    return removed


def begin_attempt(output_dir: str, stage: str, identity: dict[str, Any], **facts: Any) -> None:
    """Record the identity and a new attempt with `facts` (world size, samples done and to do).

    The first attempt records the whole identity; later ones only fill in what was not known before.
    """
    record = read_record(output_dir, stage) or {"identity": identity, "attempts": []}
    for key, value in identity.items():
        if key in record["identity"] and record["identity"][key] is None:
            record["identity"][key] = value
    record["attempts"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **facts})
    atomic_write_json(record_path(output_dir, stage), record)


def end_attempt(output_dir: str, stage: str, **facts: Any) -> list[dict[str, Any]]:
    """Add `facts` (e.g. elapsed time) to the last attempt; returns every attempt so far."""
    record = read_record(output_dir, stage)
    record["attempts"][-1].update(facts)
    atomic_write_json(record_path(output_dir, stage), record)
    return record["attempts"]

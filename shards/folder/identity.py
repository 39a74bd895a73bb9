"""What a run is, so that a resumed run never mixes its work with another's.

A stage's identity is the settings that change its results (null is a value like any other), the dataset file's
digest (edit stage) and a fingerprint of the local model folder: a sha256 over every file's content, weights
included, so a checkpoint overwritten in place with same-size weights is noticed. Hashing a 60 GB checkpoint takes
a while, so each file's digest is cached in the output folder (`progress/model-digests.json`) under its size,
modification time, change time and inode: a file rewritten in any way gets a new change time, which no tool can
set back, and is hashed again. Running a stage again resumes only if its identity is unchanged; otherwise it is
refused with every difference named. Standard library only: the launcher checks before it builds any environment.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import urllib.parse
from typing import Any, Iterator

from shards.config import RunConfig
from shards.editors import FAMILY_SETTINGS
from shards.files import atomic_write_json, sha256_file
from shards.folder.records import (ALLOWED_SUFFIX, FINGERPRINT_SUFFIX, REPORTED_SUFFIX, ResumeError, check_fresh,
                                   discovered, read_record)
from shards.journal import PROGRESS_DIR
from shards.judge_prompts import judge_prompts_path, read_judge_prompts
from shards.typed_data import SchemaError

# Settings that change how a stage runs, not what it produces: a resumed run may change them freely.
OPERATIONAL = {
    "edit": ("env", "build_tiny", "samples_per_shard", "trust_remote_code"),
    "score": ("env", "build_tiny", "batch_size", "trust_remote_code", "server"),
}
DIGEST_CACHE = "model-digests.json"
HASH_THREADS = 8                                   # hashlib releases the GIL: files are hashed side by side
_ABSENT = object()


def run_identity(config: RunConfig, stage: str, served_model: str | None = None,
                 reading: str | None = None) -> dict[str, Any]:
    """The settings, model and (for the edit stage) dataset that decide a stage's results, as flat JSON data.

    Args:
        served_model: A served judge's model as its server reports it (a dated snapshot of a hosted model, say),
            once the server answered; None before.
        reading: How a served judge's `expected`-mode scores are read (`score_stage.judges.server_answers.reading`),
            once its probe settled it; None before, and in `generate` mode.
    """
    settings = dataclasses.asdict(getattr(config, stage))
    # A family's own setting left unset is no part of a run of another family: a folder edited before the
    # setting existed resumes as before.
    identity = {f"{stage}.{k}": v for k, v in settings.items() if k not in OPERATIONAL[stage]
                and not (stage == "edit" and k in FAMILY_SETTINGS and v is None)}
    if stage == "score" and config.score.backend == "server":
        # How fast and how many at once are the client's business; which server answers is not.
        server = config.score.server
        identity["score.server host"] = urllib.parse.urlsplit(server.url).hostname if server.url else \
            "the launcher's vLLM on each node"
        identity[f"score.model{REPORTED_SUFFIX}"] = served_model
        if config.score.mode == "expected":      # `generate` reads the written text, whichever server
            identity[f"score.reading{ALLOWED_SUFFIX}"] = reading
    if stage == "score":
        official_identity(config, identity)
    cache = digest_cache(config.output_dir)
    identity[f"{stage}.model{FINGERPRINT_SUFFIX}"] = model_fingerprint(settings["model"], cache)
    if stage == "edit":
        identity["dataset file sha256"] = sha256_file(config.dataset.path)
        if config.edit.lora:
            digests = [lora_fingerprint(a.path, a.weight_name, cache) for a in config.edit.lora]
            identity[f"edit.lora{FINGERPRINT_SUFFIX}"] = None if None in digests else digests
    return identity


def digest_cache(output_dir: str) -> str:
    """The run folder's cache of its model files' digests (`model_fingerprint`)."""
    return os.path.join(output_dir, PROGRESS_DIR, DIGEST_CACHE)


def official_identity(config: RunConfig, identity: dict[str, Any]) -> None:
    """The open protocol's identity is what it was before protocols existed (runs of then resume); the official
    one's holds the sha256 of the benchmark's prompts it judges with (None while there is no prompts file)."""
    if config.score.protocol == "open":
        del identity["score.protocol"], identity["score.categories"]
        return
    path = judge_prompts_path(config.dataset.path)
    try:
        identity["score.official prompts sha256"] = read_judge_prompts(path).sha256
    except (FileNotFoundError, SchemaError):
        identity["score.official prompts sha256"] = None


def check_resumable(config: RunConfig, stage: str, identity: dict[str, Any] | None = None) -> list[str]:
    """Refuse a folder holding `stage` work of a different run, or files of others where a new run would write.

    Args:
        identity: What this run is, when not `run_identity` (edits brought from elsewhere).

    Returns:
        Notes to show: what could not be compared (a model with no fingerprint).

    Raises:
        ResumeError: naming every difference, or the files in the way.
    """
    if read_record(config.output_dir, stage) is None:
        check_fresh(config.output_dir, stage)
        return []
    return check_identity(config.output_dir, stage, identity or run_identity(config, stage))


def check_identity(output_dir: str, stage: str, identity: dict[str, Any]) -> list[str]:
    """Refuse to resume `stage` in `output_dir` if its recorded identity differs from `identity`.

    Returns:
        A note for each fingerprint that could not be compared because one side has none.

    Raises:
        ResumeError: listing each differing setting with its recorded and current value.
    """
    record = read_record(output_dir, stage)
    if record is None:
        return []
    before, differences, notes = record.get("identity", {}), [], []
    for key in sorted(set(before) | set(identity)):
        was, now = before.get(key, _ABSENT), identity.get(key, _ABSENT)
        if was == now:
            continue
        if discovered(key):
            model = identity.get(key[: -len(FINGERPRINT_SUFFIX)], "?") if key.endswith(FINGERPRINT_SUFFIX) else None
            if None in (was, now) or _ABSENT in (was, now):
                notes.append(f"{key}{f' ({model})' if model else ''}: not compared, it could not be computed "
                             f"{'when the run started' if was in (None, _ABSENT) else 'now'} (a hub id, a "
                             "folder not built yet, or a server not up yet)")
                continue
            key = f"{key} ({model})" if model else key
        differences.append(f"{key}: was {_short(was)}, now {_short(now)}")
    if differences:
        raise ResumeError(
            f"{output_dir} holds {stage} work of a different run, and the two are not mixed:\n  "
            + "\n  ".join(differences)
            + f"\nTo discard its {stage} work and start over, run again with --restart (the launcher: --restart "
              f"{stage}), or choose another output directory."
        )
    return notes


def _short(value: Any, limit: int = 60) -> str:
    if value is _ABSENT:
        return "(not recorded)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_fingerprint(model: str, cache_path: str | None = None, only: list[str] | None = None) -> str | None:
    """A sha256 over every file of a local checkpoint folder: its path, size and content digest.

    Hidden files and folders (a builder's staging folder) are left out. None for a hub id, whose files are not on
    disk before it loads.

    Args:
        cache_path: A JSON file of earlier file digests to reuse and update (None: hash every file).
        only: Fingerprint just these files of the folder (relative paths).
    """
    if not os.path.isdir(model):
        return None
    if only is not None:
        files = [os.path.join(model, name) for name in only if os.path.isfile(os.path.join(model, name))]
        if len(files) != len(only):
            return None
    else:
        files = []
        for folder, subfolders, names in os.walk(model):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            files += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
    with _digest_cache(cache_path) as cache:
        stats = {path: _stat_key(path) for path in files}
        stale = [p for p in files if cache.get(os.path.realpath(p), {}).get("stat") != stats[p]]
        with concurrent.futures.ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
            for path, digest in zip(stale, pool.map(sha256_file, stale)):
                cache[os.path.realpath(path)] = {"stat": stats[path], "sha256": digest}
    digest = hashlib.sha256()
    for path in files:
        entry = cache[os.path.realpath(path)]
        digest.update(f"{os.path.relpath(path, model)}\0{entry['stat'][0]}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


def lora_fingerprint(path: str, weight_name: str | None, cache_path: str | None = None) -> str | None:
    """The sha256 of a local LoRA's weights file (`weight_name` inside a folder, or the folder's whole content),
    cached like a model's; None for a hub id."""
    if os.path.isfile(path):
        return model_fingerprint(os.path.dirname(path) or ".", cache_path, only=[os.path.basename(path)])
    if weight_name and os.path.isdir(path):
        return model_fingerprint(path, cache_path, only=[weight_name])
    return model_fingerprint(path, cache_path)


def _stat_key(path: str) -> list[int]:
    """What changes whenever a file's content might: size, modification time, change time (which no tool can set
    back), device and inode (a file replaced by another)."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino]


@contextlib.contextmanager
def _digest_cache(path: str | None) -> Iterator[dict[str, Any]]:
    """The cached digests, held under an exclusive lock so that ranks starting together hash a checkpoint once
    (the first does, the others then read its results); written back on the way out."""
    if path is None:
        yield {}
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as f:
                cache = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            cache = {}
        before = json.dumps(cache, sort_keys=True)
        yield cache
        if json.dumps(cache, sort_keys=True) != before:
            atomic_write_json(path, cache)

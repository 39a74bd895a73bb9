"""`<output>/manifest.json`: what the edit stage made, the file the score stage reads.

It lists every shard part (path, sha256, sample count) and every selected sample (where its tensor is, its seed,
or why it failed), with the run's attempts, the editor, the versions and the resolved config. Written once the
edit stage's ranks are done, atomically; read by the score stage, `launch compare` (through the report) and a
resumed edit stage. Standard library only.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shards.files import atomic_write_json
from shards.store import ShardError

MANIFEST_FORMAT = "qwen-edit-bench/manifest-v2"
MANIFEST_NAME = "manifest.json"


def write_manifest(output_dir: str, manifest: dict[str, Any]) -> str:
    """Write `<output_dir>/manifest.json` atomically and return its path."""
    path = os.path.join(output_dir, MANIFEST_NAME)
    atomic_write_json(path, {"format": MANIFEST_FORMAT, **manifest})
    return path


def read_manifest(output_dir: str) -> dict[str, Any]:
    """Read and check `<output_dir>/manifest.json`.

    Raises:
        ShardError: if it is missing, not JSON, of another format, or lists an edited sample in no listed shard.
    """
    path = os.path.join(output_dir, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ShardError(f"no manifest at {path}: run the edit stage on this output directory first") from None
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON: {e}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ShardError(f"{path}: format is {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    listed = {s["path"] for s in manifest["shards"]}
    for sample in manifest["samples"]:
        if sample["status"] == "ok" and sample["shard"] not in listed:
            raise ShardError(f"{path}: sample '{sample['id']}' points to shard {sample['shard']}, "
                             "which the manifest does not list")
    return manifest

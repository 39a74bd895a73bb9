"""What the score stage reads before it judges: the manifest's samples this run reports on (checked against the
config's prompts), every shard and original image the judge will see (verified against their digests), and at the
end, that every edited sample has a judgement of its very pixels."""

from __future__ import annotations

import os
from typing import Any

from score_stage.worker import original_problem
from shards.config import RunConfig, judged_categories
from shards.config_prompts import prompt_fields
from shards.dataset import DatasetError, select_samples
from shards.runtime.dist import DistState, map_in_parallel
from shards.store import ShardError, shard_problem


def selected_entries(config: RunConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest samples this run reports on; each must have judge prompts. Checked before any model loads."""
    entries = select_samples(manifest["samples"], config.dataset.categories, config.dataset.limit,
                             category_of=lambda entry: entry["category"], where=config.dataset.where,
                             extra_of=lambda entry: entry.get("extra", {}))
    key, fields = config.score.human_score_key, prompt_fields(config)
    for entry in entries:
        if entry["category"] not in judged_categories(config.score):
            which = "has no judge prompts in" if config.score.protocol == "open" else "is not judged by"
            key = "score.prompts" if config.score.protocol == "open" else "score.categories"
            raise DatasetError(f"sample '{entry['id']}' of the manifest has category '{entry['category']}', "
                               f"which {which} {config.source} ({key})")
        missing = [f for f in fields[entry["category"]] if entry.get("extra", {}).get(f) is None]
        if missing:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has no field '{missing[0]}', which the "
                               f"judge prompts of category '{entry['category']}' use ({{extra[{missing[0]}]}})")
        human = entry.get("extra", {}).get(key)
        if human is not None and (isinstance(human, bool) or not isinstance(human, (int, float))):
            raise DatasetError(f"sample '{entry['id']}': '{key}' (score.human_score_key) must be a number, "
                               f"got {human!r:.40}")
    return entries


def verify_inputs_before_judging(config: RunConfig, manifest: dict, entries: list[dict], todo: list[dict],
                                 state: DistState) -> None:
    """Every shard the report rests on, and every original image the judge is about to see, is checked against
    the manifest's sha256 (each rank a share); any rank's finding stops every rank before anything is judged.

    Raises:
        ShardError: naming each shard or original image that is missing or changed.
    """
    needed = {e["shard"] for e in entries if e["status"] == "ok"}
    shards = [s for s in manifest["shards"] if s["path"] in needed]
    originals = [e for e in todo if _sees_original(config, e)]
    checks = [("shard", s) for s in shards] + [("original", e) for e in originals]
    problems = [p for p in map_in_parallel(checks, lambda c: _input_problem(config, manifest, *c), state) if p]
    if problems:
        raise ShardError("; ".join(problems) + f" (as recorded in {config.output_dir}/manifest.json); "
                                               "nothing was judged")


def _sees_original(config: RunConfig, entry: dict) -> bool:
    if config.score.protocol == "official":       # every benchmark's own judge compares the edit with it
        return True
    dimensions = config.score.prompts[entry["category"]].dimensions.values()
    return any(d.images == "original_and_edited" for d in dimensions)


def original_path(manifest: dict, entry: dict) -> str:
    return os.path.join(manifest["dataset"]["root"], entry["image"])


def _input_problem(config: RunConfig, manifest: dict, kind: str, item: dict) -> str | None:
    if kind == "shard":
        return shard_problem(config.output_dir, item)
    return original_problem(manifest["dataset"]["root"], item)


def check_judged(config: RunConfig, entries: list[dict], judged: dict[str, dict]) -> None:
    """Every edited sample of the manifest has a judgement, of its very pixels."""
    wrong = [e["id"] for e in entries if e["status"] == "ok" and
             (e["id"] not in judged or judged[e["id"]].get("image_sha256") != e["sha256"])]
    if wrong:
        raise ShardError(f"{len(wrong)} edited sample(s) have no judgement of their current pixels "
                         f"({', '.join(wrong[:10])}); run the score stage again to judge them")

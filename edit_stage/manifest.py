"""The manifest an edit run writes: every selected sample where its verified shard part holds it (or why it
failed), the run's attempts, who made the edits, the versions and the resolved config (`shards.manifest`).

Both the edit stage and the import of brought edits build it here.
"""

from __future__ import annotations

import os
from typing import Any

from edit_stage.plan import Plan, edited_entries
from shards.config import RunConfig, to_dict
from shards.dataset import Sample
from shards.editors import FAMILY_SETTINGS
from shards.runtime.provenance import hub_revision, installed_packages, package_versions, tool_version


def build_manifest(config: RunConfig, plan: Plan, parts: list[dict], attempts: list[dict],
                   identity: dict[str, Any], editor: dict[str, Any]) -> dict:
    """The manifest of the selected samples, in dataset order: each edited one where its verified part holds it,
    each unusable one as `failed` with its reason."""
    entries = edited_entries(parts)
    samples = [_failed_entry(s, plan.images.failed[s.id]) if s.id in plan.images.failed
               else {**entries[s.id], "status": "ok"} for s in plan.samples]
    used = {s["shard"] for s in samples if s["status"] == "ok"}
    shards = {p["path"]: {k: p[k] for k in ("path", "sha256", "num_samples", "rank", "world_size")}
              for p in parts if p["path"] in used}
    return {
        "world_size": attempts[-1]["world_size"],
        "attempts": attempts,
        "dataset": {"path": config.dataset.path, "root": os.path.dirname(config.dataset.path),
                    "sha256": identity["dataset file sha256"]},
        "model": editor,
        "versions": package_versions(),
        "environment": installed_packages(), "tool": tool_version(),
        "config": to_dict(config),
        "elapsed_s": round(sum(a.get("elapsed_s", 0.0) for a in attempts), 3),
        "shards": sorted(shards.values(), key=lambda s: s["path"]),
        "samples": samples,
    }


def editor_record(config: RunConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """Who made the edits: checkpoint (its hub revision, or its files' fingerprint when local), pipeline, LoRA
    adapters (with their weights' sha256) and the sampling settings, and a one-line label the report shows (a
    few-step LoRA run says so)."""
    from edit_stage.pipeline import lora_record

    edit = config.edit
    lora = lora_record(edit)
    adapters = "".join(f" + LoRA {os.path.basename(a['path'].rstrip('/'))}"
                       f"{'/' + a['weight_name'] if a['weight_name'] else ''} x{a['scale']:g}" for a in lora)
    cfg = f"CFG {edit.true_cfg_scale:g}" if edit.true_cfg_scale > 1 and edit.negative_prompt is not None else "no CFG"
    guidance = f", guidance {edit.guidance_scale:g}" if edit.guidance_scale is not None else ""
    family = {key: getattr(edit, key) for key in FAMILY_SETTINGS if getattr(edit, key) is not None}
    return {"path": edit.model, "revision": hub_revision(edit.model),
            "fingerprint": identity.get("edit.model files fingerprint"), "pipeline": edit.pipeline,
            "lora": lora, "fuse_lora": edit.fuse_lora, "seed": edit.seed, "dtype": edit.dtype,
            "num_inference_steps": edit.num_inference_steps, "true_cfg_scale": edit.true_cfg_scale,
            "family_settings": family,
            "label": f"{edit.model}{adapters}, {edit.num_inference_steps} steps, {cfg}{guidance}"}


def _failed_entry(sample: Sample, reason: str) -> dict[str, Any]:
    return {"id": sample.id, "category": sample.category, "instruction": sample.instruction,
            "description": sample.description, "image": sample.image, "extra": sample.extra,
            "status": "failed", "reason": reason}

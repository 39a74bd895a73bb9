"""KRIS-Bench's table. The benchmark's repository ships per-task judgements but no aggregation; its issue #1 says
"the scores are simply averaged and then normalized to 100", and the one script that does it, and that the
published third-party figures come from, is BAGEL's `eval/gen/kris/summarize.py`, whose formulas this follows:
every 1-5 score normalised to (s - 1) * 25; per category, each dimension the mean of its normalised values pooled
over the category's tasks' samples; a category's AVG the mean of all its normalised values pooled (every sample's
every dimension); the three knowledge types' AVG and the Overall likewise pooled. Two decimals.
"""

from __future__ import annotations

from typing import Any

from score_stage.leaderboards import cell, scored, table

CATEGORIES = {
    "Attribute Perception": ("count_change", "color_change", "size_adjustment", "part_completion",
                             "anomaly_correction"),
    "Spatial Perception": ("viewpoint_change", "position_movement"),
    "Temporal Prediction": ("temporal_prediction",),
    "Social Science": ("humanities", "practical_knowledge"),
    "Natural Science": ("biology", "chemistry", "geography", "medicine", "mathematics", "physics"),
    "Logical Reasoning": ("abstract_reasoning", "rule-based_reasoning"),
    "Instruction Decomposition": ("multi-element_composition", "multi-instruction_execution"),
}
KNOWLEDGE = ("Social Science", "Natural Science", "Logical Reasoning")     # the categories judged on KP
META = {"Factual Knowledge": ("Attribute Perception", "Spatial Perception", "Temporal Prediction"),
        "Conceptual Knowledge": ("Social Science", "Natural Science"),
        "Procedural Knowledge": ("Logical Reasoning", "Instruction Decomposition")}
DIMENSIONS = {"consistency": "VC", "quality": "VQ", "instruction": "IF", "knowledge": "KP"}
DIGITS = 2


def normalised(score: float) -> float:
    return (score - 1) * 25


def values(results: list[dict[str, Any]], category: str) -> dict[str, list[float]]:
    """The category's normalised values per dimension, pooled over its tasks' samples."""
    names = [d for d in DIMENSIONS if d != "knowledge" or category in KNOWLEDGE]
    found = {d: [] for d in names}
    for r in results:
        if r["category"] in CATEGORIES[category]:
            for d in names:
                if d in r["dimensions"]:
                    found[d].append(normalised(r["dimensions"][d]["score"]))
    return found


def tables(results: list[dict[str, Any]], extras: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table: a row per category (VC, VQ, IF, KP, AVG), per knowledge type and Overall (AVG only)."""
    ok = scored(results)
    pooled = {c: values(ok, c) for c in CATEGORIES}
    flat = {c: [v for vs in found.values() for v in vs] for c, found in pooled.items()}
    columns = [*DIMENSIONS.values(), "AVG"]
    empty = {"value": None, "n": 0}
    rows = []
    for category, found in pooled.items():
        if flat[category]:
            rows.append((category, [cell(found[d], DIGITS) if d in found else empty for d in DIMENSIONS]
                         + [cell(flat[category], DIGITS)]))
    for meta, children in META.items():
        rows.append((meta, [empty] * 4 + [cell([v for c in children for v in flat[c]], DIGITS)]))
    rows.append(("Overall", [empty] * 4 + [cell([v for c in CATEGORIES for v in flat[c]], DIGITS)]))
    return [table("KRIS-Bench (normalised to 0-100)", columns, rows, len(results) - len(ok),
                  ["n counts scores, not samples: AVG pools every dimension of every sample"])]

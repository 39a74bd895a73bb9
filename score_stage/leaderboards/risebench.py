"""RISEBench's tables (PhoenixZ810/RISEBench `gpt_eval.py`, calculate_score, calculate_completion and main).

Per sample, on 1-5 (logical puzzles judged 0/1, mapped to 1 and 5 when judged): the score
0.3 AC + 0.5 R + 0.2 VP (consistency-free samples 0.8 R + 0.2 VP; logical 0.3 AC + 0.7 R), halved with a floor of 1
when R = 1; the sample is complete when every dimension judged is 5. Means pool the samples (overall, per
category, per subtask); Accuracy is the share complete, the Score-Percentage 25 (S - 1). The README's tables show
percentages with one decimal; the Score-Origin (1-5) is given with two.
"""

from __future__ import annotations

from typing import Any

from score_stage.leaderboards import cell, dimension, scored, table

CATEGORIES = {"temporal_reasoning": "Temporal", "causal_reasoning": "Causal", "spatial_reasoning": "Spatial",
              "logical_reasoning": "Logical"}
DIMENSIONS = {"reasoning": "Instruction Reasoning", "consistency": "Appearance Consistency",
              "plausibility": "Visual Plausibility"}


def percent(score: float) -> float:
    return 25 * (score - 1)


def sample_score(category: str, dimensions: dict[str, dict[str, Any]]) -> float:
    """The sample's weighted score from its dimensions' (no `consistency` for a consistency-free sample, no
    `plausibility` for a logical one)."""
    ac, r, vp = (dimensions[d]["score"] if d in dimensions else None for d in ("consistency", "reasoning",
                                                                                "plausibility"))
    if category == "logical_reasoning":
        score = 0.3 * ac + 0.7 * r
    elif ac is None:
        score = 0.8 * r + 0.2 * vp
    else:
        score = 0.3 * ac + 0.5 * r + 0.2 * vp
    return max(1.0, score * 0.5) if r == 1 else score


def complete(result: dict[str, Any]) -> bool:
    """Every dimension judged is 5."""
    return all(answer["score"] == 5 for answer in result["dimensions"].values())


def figures_row(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy (%), Score (%) and Score-Origin over `results`."""
    scores = [sample_score(r["category"], r["dimensions"]) for r in results]
    return [cell([100.0 * complete(r) for r in results], 1), cell(scores, 1, percent), cell(scores, 2)]


def tables(results: list[dict[str, Any]], extras: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The main table (per category and overall), the dimensions' table, and the subtasks' when the data has them."""
    ok, left_out = scored(results), len(results) - len(scored(results))
    present = [c for c in CATEGORIES if any(r["category"] == c for r in results)]
    by_category = [figures_row([r for r in ok if r["category"] == c]) for c in present]
    overall = figures_row(ok)
    labels = ("Accuracy (%)", "Score (%)", "Score-Origin (1-5)")
    main = table("RISEBench", [CATEGORIES[c] for c in present] + ["Overall"],
                 [(label, [row[i] for row in by_category] + [overall[i]]) for i, label in enumerate(labels)],
                 left_out, ["The README's main table is the Accuracy row"])
    dims = table("RISEBench dimensions (Score %)", list(DIMENSIONS.values()),
                 [("Overall", [cell([v for r in ok if (v := dimension(r, d)) is not None], 1, percent)
                               for d in DIMENSIONS])], left_out)
    found = [main, dims]
    subtasks = sorted({extras.get(r["id"], {}).get("subtask") for r in results} - {None})
    if subtasks:
        rows = [(s, figures_row([r for r in ok if extras.get(r["id"], {}).get("subtask") == s])) for s in subtasks]
        found.append(table("RISEBench subtasks", list(labels), rows, left_out))
    return found

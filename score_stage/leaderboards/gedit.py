"""GEdit-Bench's table (Step1X-Edit `GEdit-Bench/calculate_statistics.py`): per sample SC, PQ and the overall
O = sqrt(SC * PQ), each 0-10; per language (en, cn) the plain mean of each over every task type's samples, and the
Average as the unweighted mean of the task types' means (so the average O is not sqrt(avg SC * avg PQ)); the same
over the samples flagged `intersection`. The scorer prints three decimals (its figures' plots show two)."""

from __future__ import annotations

import math
from typing import Any

from score_stage.leaderboards import cell, dimension, scored, table

TASKS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
         "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")
COLUMNS = ["G_SC", "G_PQ", "G_O"]
DIGITS = 3


def figures(result: dict[str, Any]) -> tuple[float, float, float]:
    """A sample's SC, PQ and O = sqrt(SC * PQ)."""
    sc, pq = dimension(result, "semantics"), dimension(result, "quality")
    return sc, pq, math.sqrt(sc * pq)


def split_table(title: str, results: list[dict[str, Any]], left_out: int) -> dict[str, Any]:
    """One language (and subset): a row per task type with samples, then the Average over task types."""
    rows, means = [], {c: [] for c in COLUMNS}
    for task in TASKS:
        values = [figures(r) for r in results if r["category"] == task]
        if not values:
            continue
        cells = [cell([v[i] for v in values], DIGITS) for i in range(3)]
        for name, c in zip(COLUMNS, cells):
            means[name].append(sum(v[COLUMNS.index(name)] for v in values) / len(values))
        rows.append((task, cells))
    n = sum(c[0]["n"] for _, c in rows)
    rows.append(("Average", [{**cell(means[name], DIGITS), "n": n} for name in COLUMNS]))
    return table(title, COLUMNS, rows, left_out, [f"Average: the mean of {len(rows) - 1} task types' means"])


def tables(results: list[dict[str, Any]], extras: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A table per language and subset (Full, Intersection) that has samples."""
    found = []
    for language in ("en", "cn"):
        for subset in ("Full", "Intersection"):
            scope = [r for r in results if extras.get(r["id"], {}).get("language") == language and
                     (subset == "Full" or extras.get(r["id"], {}).get("intersection"))]
            if scope:
                found.append(split_table(f"GEdit-Bench-{language.upper()} ({subset} set)", scored(scope),
                                         len(scope) - len(scored(scope))))
    return found

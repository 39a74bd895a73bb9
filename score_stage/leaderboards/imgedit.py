"""ImgEdit-Bench Basic's table (PKU-YuanGroup/ImgEdit `Benchmark/Basic/step1_get_avgscore.py` and
`step2_typescore.py`; README Table 4): a sample's score the mean of its three 1-5 scores, rounded to two decimals;
an edit type's the mean of its samples' rounded scores, rounded to two; the Overall, which the code leaves out,
as Table 4's caption says ("calculated by averaging all scores across tasks") and its rows confirm: the unweighted
mean of the edit types' figures, two decimals.
"""

from __future__ import annotations

from typing import Any

from score_stage.leaderboards import cell, scored, table

COLUMNS = {"add": "Add", "adjust": "Adjust", "extract": "Extract", "replace": "Replace", "remove": "Remove",
           "background": "Background", "style": "Style", "compose": "Hybrid", "action": "Action"}
ALIASES = {"alter": "adjust"}       # the benchmark's data named `adjust` edits `alter` until June 2025


def sample_score(result: dict[str, Any]) -> float:
    scores = [answer["score"] for answer in result["dimensions"].values()]
    return round(sum(scores) / len(scores), 2)


def tables(results: list[dict[str, Any]], extras: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row: each edit type with samples, then the Overall."""
    ok = scored(results)
    cells = {}
    for edit_type, column in COLUMNS.items():
        found = [sample_score(r) for r in ok if ALIASES.get(r["category"], r["category"]) == edit_type]
        if found or any(ALIASES.get(r["category"], r["category"]) == edit_type for r in results):
            cells[column] = cell(found, 2)
    figures = [c["value"] for c in cells.values() if c["value"] is not None]
    overall = {"value": round(sum(figures) / len(figures), 2) if figures else None, "n": len(ok)}
    return [table("ImgEdit-Bench Basic", [*cells, "Overall"], [("Score (1-5)", [*cells.values(), overall])],
                  len(results) - len(ok), [f"Overall: the mean of {len(figures)} edit types' figures"])]

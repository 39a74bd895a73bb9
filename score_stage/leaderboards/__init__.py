"""Each benchmark's own leaderboard table, computed from the per-sample judgements of its `official` protocol as its
authors' scoring code computes it (its formulas, groupings and rounding), so that a figure can stand beside the
published one.

Pure functions over `SampleResult` dicts and each sample's dataset fields (`extra`, by id). Only scored samples
(`status: ok`) enter a figure: an unparsed or refused judgement is never made a number (GEdit-Bench's scorer
substitutes a random integer for it, ports such as lmms-eval a zero); every cell says how many samples it rests on,
and every table how many samples of its scope were left out.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

BENCHMARKS = ("gedit", "risebench", "kris", "imgedit")


def cell(values: list[float], digits: int, scale: Callable[[float], float] = lambda v: v) -> dict[str, Any]:
    """The mean of `values`, mapped by `scale` and rounded to `digits` decimals (None when there is none), and
    how many values it rests on."""
    value = scale(sum(values) / len(values)) if values else None
    return {"value": None if value is None else round(value, digits), "n": len(values)}


def table(title: str, columns: list[str], rows: list[tuple[str, list[dict]]], left_out: int,
          notes: Iterable[str] = ()) -> dict[str, Any]:
    """One table: its columns, its rows (a label and one cell per column), and the samples of its scope that have
    no score (unparsed or failed) and so are in none of its figures."""
    return {"title": title, "columns": columns, "rows": [{"label": label, "cells": cells} for label, cells in rows],
            "left_out": left_out, "notes": list(notes)}


def scored(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["status"] == "ok"]


def dimension(result: dict[str, Any], name: str) -> float | None:
    return result.get("dimensions", {}).get(name, {}).get("score")


def official_tables(benchmark: str, results: list[dict[str, Any]],
                    extras: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark's tables over `results` (each sample's dataset fields in `extras`, by sample id).

    Raises:
        ValueError: for a benchmark without an official protocol.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"no official table for benchmark '{benchmark}' (known: {', '.join(BENCHMARKS)})")
    return importlib.import_module(f"score_stage.leaderboards.{benchmark}").tables(results, extras)

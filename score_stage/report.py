"""The final report: per-sample results, per-category and overall statistics, as JSON, CSV and Markdown.

Pure Python (no torch): statistics are computed over scored samples only; `unparsed` and `failed` samples are
counted and listed, never given a number.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Iterable

from shards.store import atomic_write, atomic_write_json

STATUSES = ("ok", "unparsed", "failed")
CSV_COLUMNS = ("id", "category", "score", "status", "instruction", "response", "reason")


def stats(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """count, scored, unparsed, failed, and mean/min/max over the scored samples (None when none is scored)."""
    results = list(results)
    scores = [r["score"] for r in results if r["status"] == "ok"]
    return {
        "count": len(results),
        "scored": len(scores),
        "unparsed": sum(r["status"] == "unparsed" for r in results),
        "failed": sum(r["status"] == "failed" for r in results),
        "mean": sum(scores) / len(scores) if scores else None,
        "min": min(scores) if scores else None,
        "max": max(scores) if scores else None,
    }


def build_report(results: list[dict[str, Any]], category_order: list[str], **run_info: Any) -> dict[str, Any]:
    """The report.json content.

    Args:
        results: One entry per sample (id, category, score, status, response, ...), in manifest order.
        category_order: Categories in the order the config lists them; only those with samples are reported.
        run_info: Anything else to record (world sizes, models, timings, config).
    """
    present = [c for c in category_order if any(r["category"] == c for r in results)]
    return {
        **run_info,
        "categories": {c: stats(r for r in results if r["category"] == c) for c in present},
        "overall": stats(results),
        "samples": results,
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The per-category table a person reads, with the overall row last."""
    lines = ["| category | count | scored | unparsed | failed | mean | min | max |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = list(report["categories"].items()) + [("**overall**", report["overall"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['count']} | {s['scored']} | {s['unparsed']} | {s['failed']} | "
                     f"{_fmt(s['mean'])} | {_fmt(s['min'])} | {_fmt(s['max'])} |")
    return "\n".join(lines)


def results_csv(results: list[dict[str, Any]]) -> str:
    """One row per sample; multi-line responses are quoted, not broken into rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "score": "" if r["score"] is None else r["score"]} for r in results)
    return buffer.getvalue()


def write_report(output_dir: str, report: dict[str, Any]) -> dict[str, str]:
    """Write report.json, results.csv and report.md atomically; returns their paths by kind."""
    paths = {kind: os.path.join(output_dir, name)
             for kind, name in (("json", "report.json"), ("csv", "results.csv"), ("md", "report.md"))}
    atomic_write_json(paths["json"], report)
    atomic_write(paths["csv"], results_csv(report["samples"]).encode("utf-8"))
    unparsed = [r["id"] for r in report["samples"] if r["status"] == "unparsed"]
    failed = [f"{r['id']} ({r['reason']})" for r in report["samples"] if r["status"] == "failed"]
    text = ["# Edit benchmark report", "", f"Edit model: `{report['edit_model']}`  ",
            f"Judge: `{report['judge_model']}`", "", markdown_table(report), ""]
    if unparsed:
        text += [f"Unparsed ({len(unparsed)}): " + ", ".join(unparsed), ""]
    if failed:
        text += [f"Failed ({len(failed)}): " + "; ".join(failed), ""]
    atomic_write(paths["md"], "\n".join(text).encode("utf-8"))
    return paths

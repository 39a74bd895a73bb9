"""The final report: per-sample results, per-category and overall statistics, as JSON, CSV and Markdown.

Pure Python (no torch): statistics are computed over scored samples only; `unparsed` and `failed` samples are
counted and listed, never given a number.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Callable, Iterable

from shards.store import REPORT_NAMES, atomic_write, atomic_write_json

STATUSES = ("ok", "unparsed", "failed")
CSV_COLUMNS = ("id", "category", "score", "status", "instruction", "response", "reason")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stats(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts, and mean/min/max over the scored samples (None when none is scored), with each dimension's mean
    over the samples where that dimension has a score."""
    results = list(results)
    scores = [r["score"] for r in results if r["status"] == "ok"]
    by_dimension: dict[str, list[float]] = {}
    for r in results:
        for name, answer in r.get("dimensions", {}).items():
            if answer["score"] is not None:
                by_dimension.setdefault(name, []).append(answer["score"])
    return {
        "count": len(results),
        "scored": len(scores),
        "unparsed": sum(r["status"] == "unparsed" for r in results),
        "failed": sum(r["status"] == "failed" for r in results),
        "mean": _mean(scores),
        "min": min(scores) if scores else None,
        "max": max(scores) if scores else None,
        "dimensions": {name: {"scored": len(v), "mean": _mean(v)} for name, v in by_dimension.items()},
    }


def overall(categories: dict[str, dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Both averages, named, with the number behind each.

    `mean_over_samples` weighs every scored sample alike (as lmms-eval's port of GEdit-Bench does);
    `mean_over_categories` is the mean of the category means (as GEdit-Bench's official script does), over the
    `categories_in_mean` categories that have a scored sample. The same two for each dimension.
    """
    every = stats(results)

    def macro(mean_of: Callable[[dict], float | None]) -> tuple[float | None, int]:
        means = [m for m in map(mean_of, categories.values()) if m is not None]
        return _mean(means), len(means)

    mean_over_categories, in_mean = macro(lambda c: c["mean"])
    dimensions = {}
    for name, d in every["dimensions"].items():
        dim_macro, dim_in_mean = macro(lambda c: c["dimensions"].get(name, {}).get("mean"))
        dimensions[name] = {"scored": d["scored"], "mean_over_samples": d["mean"],
                            "mean_over_categories": dim_macro, "categories_in_mean": dim_in_mean}
    return {**{k: every[k] for k in ("count", "scored", "unparsed", "failed", "min", "max")},
            "mean_over_samples": every["mean"], "mean_over_categories": mean_over_categories,
            "categories_in_mean": in_mean, "dimensions": dimensions}


def build_report(results: list[dict[str, Any]], category_order: list[str], **run_info: Any) -> dict[str, Any]:
    """The report.json content.

    Args:
        results: One entry per sample (id, category, score, status, dimensions, response, ...), in manifest order.
        category_order: Categories in the order the config lists them; only those with samples are reported.
        run_info: Anything else to record (world sizes, models, timings, config).
    """
    present = [c for c in category_order if any(r["category"] == c for r in results)]
    categories = {c: stats(r for r in results if r["category"] == c) for c in present}
    return {**run_info, "categories": categories, "overall": overall(categories, results), "samples": results}


def format_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_cell(text: str) -> str:
    """`text` as one Markdown table cell: a `|` would start a new column and a newline a new row."""
    return " ".join(str(text).split("\n")).replace("|", "\\|")


def markdown_table(report: dict[str, Any]) -> str:
    """The per-category table a person reads, then both averages: over samples and over categories."""
    o = report["overall"]
    names = list(o["dimensions"]) if len(o["dimensions"]) > 1 else []
    lines = ["| category | count | scored | unparsed | failed | mean | min | max |" +
             "".join(f" {markdown_cell(n)} |" for n in names),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for name, s in report["categories"].items():
        dims = "".join(f" {format_score(s['dimensions'].get(n, {}).get('mean'))} |" for n in names)
        lines.append(f"| {markdown_cell(name)} | {s['count']} | {s['scored']} | {s['unparsed']} | {s['failed']} | "
                     f"{format_score(s['mean'])} | {format_score(s['min'])} | {format_score(s['max'])} |{dims}")
    dims = "".join(f" {format_score(o['dimensions'][n]['mean_over_samples'])} |" for n in names)
    lines.append(f"| **mean over samples** | {o['count']} | {o['scored']} | {o['unparsed']} | {o['failed']} | "
                 f"{format_score(o['mean_over_samples'])} | {format_score(o['min'])} | {format_score(o['max'])} |"
                 f"{dims}")
    dims = "".join(f" {format_score(o['dimensions'][n]['mean_over_categories'])} |" for n in names)
    lines.append(f"| **mean over categories** | {o['categories_in_mean']} categories | | | | "
                 f"{format_score(o['mean_over_categories'])} | | |{dims}")
    return "\n".join(lines)


def results_csv(results: list[dict[str, Any]]) -> str:
    """One row per sample, with a `score:<dimension>` column per dimension when there are several; multi-line
    responses are quoted, not broken into rows."""
    names = list(dict.fromkeys(n for r in results for n in r.get("dimensions", {})))
    names = names if len(names) > 1 else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS[:4], *(f"score:{n}" for n in names), *CSV_COLUMNS[4:]],
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in results:
        dims = {f"score:{n}": r["dimensions"][n]["score"] for n in names if n in r.get("dimensions", {})}
        writer.writerow({**r, **dims, "score": "" if r["score"] is None else r["score"]})
    return buffer.getvalue()


def write_report(output_dir: str, report: dict[str, Any], thumbnails: dict[str, dict]) -> dict[str, str]:
    """Write report.json, results.csv, report.md and report.html atomically; returns their paths by kind.

    Args:
        thumbnails: Sample id -> {"original", "edited"} image data URIs for report.html.
    """
    from score_stage.html_report import build_html

    paths = {kind: os.path.join(output_dir, name) for kind, name in zip(("json", "csv", "md", "html"), REPORT_NAMES)}
    atomic_write_json(paths["json"], report)
    atomic_write(paths["html"], build_html(report, thumbnails).encode("utf-8"))
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

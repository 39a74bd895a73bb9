"""The final report: per-sample results, per-category and overall statistics, as JSON, CSV and Markdown.

Pure Python (no torch): statistics are computed over scored samples only; `unparsed` and `failed` samples are
counted and listed, never given a number.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Callable, Iterable

from shards.files import atomic_write, atomic_write_json
from shards.report.numbers import interval, number
from shards.report.page import markdown_cell
from shards.report.schema import REPORT_NAMES, REPORT_SCHEMA_VERSION, Report
from shards.report.stats import RESAMPLES, SEED, agreement, bootstrap_means, mean

STATUSES = ("ok", "unparsed", "failed")
CSV_COLUMNS = ("id", "category", "score", "status", "instruction", "response", "reason")



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
        "mean": mean(scores),
        "min": min(scores) if scores else None,
        "max": max(scores) if scores else None,
        "dimensions": {name: {"scored": len(v), "mean": mean(v)} for name, v in by_dimension.items()},
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
        return mean(means), len(means)

    mean_over_categories, in_mean = macro(lambda c: c["mean"])
    dimensions = {}
    for name, d in every["dimensions"].items():
        dim_macro, dim_in_mean = macro(lambda c: c["dimensions"].get(name, {}).get("mean"))
        dimensions[name] = {"scored": d["scored"], "mean_over_samples": d["mean"],
                            "mean_over_categories": dim_macro, "categories_in_mean": dim_in_mean}
    found = {**{k: every[k] for k in ("count", "scored", "unparsed", "failed", "min", "max")},
             "mean_over_samples": every["mean"], "mean_over_categories": mean_over_categories,
             "categories_in_mean": in_mean, "dimensions": dimensions}
    spent = [r["tokens"] for r in results if r.get("tokens")]
    if spent:
        found["tokens"] = {k: sum(t[k] for t in spent) for k in ("prompt", "completion")}
    return found


def build_report(results: list[dict[str, Any]], category_order: list[str],
                 human_scores: dict[str, float] | None = None, **run_info: Any) -> dict[str, Any]:
    """The report.json content (its fields: `shards.report.schema.Report`).

    Args:
        results: One entry per sample (`SampleResult`), in manifest order.
        category_order: Categories in the order the config lists them; only those with samples are reported.
        human_scores: Sample id -> a human rating, for the samples that have one.
        run_info: The report's other fields (models, run record, world sizes, attempts, versions, timings, config).
    """
    present = [c for c in category_order if any(r["category"] == c for r in results)]
    categories = {c: stats(r for r in results if r["category"] == c) for c in present}
    report = {**run_info, "categories": categories, "overall": overall(categories, results), "samples": results}
    add_intervals(report)
    if human_scores:
        report["human_agreement"] = human_agreement(results, present, human_scores)
    return report


def add_intervals(report: dict[str, Any]) -> None:
    """A `_ci95: [low, high]` beside every mean: 95 % percentile bootstrap intervals, samples resampled within
    their category with a fixed seed, for each category's mean, both overall means, and each dimension's."""
    results, categories, o = report["samples"], report["categories"], report["overall"]

    def values(pick: Callable[[dict], float | None]) -> dict[str, list[float]]:
        return {c: [v for r in results if r["category"] == c and (v := pick(r)) is not None] for c in categories}

    score = bootstrap_means(values(lambda r: r["score"] if r["status"] == "ok" else None))
    o["mean_over_samples_ci95"] = score["mean_over_samples"]
    o["mean_over_categories_ci95"] = score["mean_over_categories"]
    for name, s in categories.items():
        s["mean_ci95"] = score["categories"][name]
    for dimension, d in o["dimensions"].items():
        found = bootstrap_means(values(lambda r: r.get("dimensions", {}).get(dimension, {}).get("score")))
        d["mean_over_samples_ci95"] = found["mean_over_samples"]
        d["mean_over_categories_ci95"] = found["mean_over_categories"]
        for name, s in categories.items():
            if dimension in s["dimensions"]:
                s["dimensions"][dimension]["mean_ci95"] = found["categories"][name]
    report["bootstrap"] = {"resamples": RESAMPLES, "seed": SEED, "level": 0.95,
                           "method": "percentile; samples resampled with replacement within each category"}


def human_agreement(results: list[dict[str, Any]], categories: list[str],
                    human_scores: dict[str, float]) -> dict[str, Any]:
    """Spearman's rho, Kendall's tau-b and pairwise accuracy between the judge's and the human scores, over the
    scored samples that have a human score, per category and overall, each with its n."""
    pairs = [(r["category"], r["score"], human_scores[r["id"]]) for r in results
             if r["status"] == "ok" and r["id"] in human_scores]

    def of(rows):
        return agreement([j for _, j, _ in rows], [h for _, _, h in rows])

    return {"overall": of(pairs), "categories": {c: of([p for p in pairs if p[0] == c]) for c in categories}}



def markdown_table(report: dict[str, Any]) -> str:
    """The per-category table a person reads, then both averages: over samples and over categories, each mean
    with its 95 % bootstrap interval (a dimension's beside its mean)."""
    o = report["overall"]
    names = list(o["dimensions"]) if len(o["dimensions"]) > 1 else []

    def dim(stats_of: dict, key: str) -> str:
        if stats_of.get(key) is None:
            return "–"
        return f"{number(stats_of[key])} {interval(stats_of.get(key + '_ci95'))}"

    lines = ["| category | count | scored | unparsed | failed | mean | 95% CI | min | max |" +
             "".join(f" {markdown_cell(n)} |" for n in names),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for name, s in report["categories"].items():
        dims = "".join(f" {dim(s['dimensions'].get(n, {}), 'mean')} |" for n in names)
        lines.append(f"| {markdown_cell(name)} | {s['count']} | {s['scored']} | {s['unparsed']} | {s['failed']} | "
                     f"{number(s['mean'])} | {interval(s.get('mean_ci95'))} | {number(s['min'])} | "
                     f"{number(s['max'])} |{dims}")
    dims = "".join(f" {dim(o['dimensions'][n], 'mean_over_samples')} |" for n in names)
    lines.append(f"| **mean over samples** | {o['count']} | {o['scored']} | {o['unparsed']} | {o['failed']} | "
                 f"{number(o['mean_over_samples'])} | {interval(o.get('mean_over_samples_ci95'))} | "
                 f"{number(o['min'])} | {number(o['max'])} |{dims}")
    dims = "".join(f" {dim(o['dimensions'][n], 'mean_over_categories')} |" for n in names)
    lines.append(f"| **mean over categories** | {o['categories_in_mean']} categories | | | | "
                 f"{number(o['mean_over_categories'])} | {interval(o.get('mean_over_categories_ci95'))} "
                 f"| | |{dims}")
    return "\n".join(lines)


def agreement_table(report: dict[str, Any]) -> str:
    """Agreement of the judge with the human ratings, per category and overall, each with its n."""
    found = report["human_agreement"]
    rows = [("**all**", found["overall"]), *found["categories"].items()]
    lines = ["| category | n | Spearman ρ | Kendall τ-b | pairwise accuracy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {markdown_cell(name)} | {a['n']} | {number(a['spearman'])} | {number(a['kendall_tau_b'])} "
              f"| {number(a['pairwise_accuracy'])} |" for name, a in rows]
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
    """Write report.json, results.csv, report.md, report.html and thumbnails.json atomically; returns their paths
    by kind. The report is checked against its definition (`Report`) first, as `launch compare` reads it, and
    every file is written from what was checked.

    Args:
        thumbnails: Sample id -> {"original", "edited"} image data URIs for report.html.

    Raises:
        SchemaError: if the report does not match its definition (nothing is written).
    """
    from score_stage.report_page import build_html

    paths = {kind: os.path.join(output_dir, name)
             for kind, name in zip(("json", "csv", "md", "html", "thumbnails"), REPORT_NAMES)}
    report = Report.from_json({"schema_version": REPORT_SCHEMA_VERSION, **report}, paths["json"]).to_json()
    atomic_write_json(paths["json"], report)
    atomic_write_json(paths["thumbnails"], thumbnails)
    atomic_write(paths["html"], build_html(report, thumbnails).encode("utf-8"))
    atomic_write(paths["csv"], results_csv(report["samples"]).encode("utf-8"))
    unparsed = [r["id"] for r in report["samples"] if r["status"] == "unparsed"]
    failed = [f"{r['id']} ({r['reason']})" for r in report["samples"] if r["status"] == "failed"]
    from score_stage.leaderboards.section import protocol_line

    text = ["# Edit benchmark report", "", f"Edit model: `{report['edit_model']}`  ",
            f"Judge: `{report['judge_model']}`  ", f"Protocol: {protocol_line(report)}", "", markdown_table(report), "",
            f"95% CI: percentile bootstrap, {report['bootstrap']['resamples']} resamples within categories, seed "
            f"{report['bootstrap']['seed']}.", ""]
    if "human_agreement" in report:
        text += ["## Agreement with human ratings", "", agreement_table(report), ""]
    if "official" in report:
        from score_stage.leaderboards.section import markdown

        text += markdown(report["official"])
    if unparsed:
        text += [f"Unparsed ({len(unparsed)}): " + ", ".join(unparsed), ""]
    if failed:
        text += [f"Failed ({len(failed)}): " + "; ".join(failed), ""]
    atomic_write(paths["md"], "\n".join(text).encode("utf-8"))
    return paths

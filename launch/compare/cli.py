"""`python3 -m launch compare RUN_DIR RUN_DIR... --output DIR`: which run edits better, and is the difference real.

Reads each run's report.json (and thumbnails.json for the page) and writes compare.json, compare.md and
compare.html: a leaderboard (each run's editor and judge, both overall means and each category's mean with their
95 % intervals, and the counts), then, for every pair of runs over the samples both scored, the mean paired
difference with a paired bootstrap interval (resampled within categories), a two-sided sign-flip permutation
p-value and wins/ties/losses, overall and per category. Runs judged by another judge, scoring mode or prompts
are not on one scale, and runs of another dataset file (or, behind a shared id, another original image,
instruction or category) are not paired samples: such pairs are refused with the difference named, unless
`--allow-different-judges` or `--allow-different-data`, which show them with a warning on every figure.
Standard library only: no stage environment is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from launch.compare.inputs import CompareError, distinct_folders, load_run  # noqa: F401 (CompareError re-exported)
from shards.files import atomic_write, atomic_write_json
from shards.report.numbers import interval, number
from shards.report.page import markdown_cell as cell
from shards.report.stats import mean, paired_bootstrap, sign_flip_p_value, wins_ties_losses

OUTPUTS = ("compare.json", "compare.md", "compare.html")


def judge_scale(report: dict[str, Any]) -> dict[str, Any]:
    """What puts two runs' scores on one scale: the judge (and its revision or files), scoring mode, prompts."""
    record = report.get("record", {})
    judge, judging = record.get("judge", {}), record.get("judging", {})
    return {"judge": report.get("judge_model"), "judge revision": judge.get("revision"),
            "judge files": judge.get("fingerprint"), "served model": judge.get("served_model"),
            "scoring mode": report.get("scoring_mode"), "answer prefix": judging.get("answer_prefix"),
            "prompts sha256": judging.get("prompts_sha256"), "image max side": judging.get("image_max_side"),
            "protocol": judging.get("protocol", "open")}


def scale_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two runs' judging, named; empty when their scores are on one scale."""
    sa, sb = judge_scale(a["report"]), judge_scale(b["report"])
    return [f"{key}: {sa[key]} vs {sb[key]}" for key in sa if sa[key] != sb[key]]


def data_differences(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """What differs between two runs' data, named; empty when a shared id is the same sample in both: the same
    dataset file, and behind each shared id the same original image, instruction and category."""
    digests = [run["report"].get("record", {}).get("dataset", {}).get("sha256") for run in (a, b)]
    missing = [name for name, digest in zip(names, digests) if digest is None]
    if missing:
        owners = " and ".join(f"{name}'s" for name in missing)
        return [f"dataset file sha256: not recorded in {owners} "
                "report.json (written before reports recorded it: run the score stage on that folder again, with "
                "its config, to rewrite its report; nothing is judged again)"]
    found = [] if digests[0] == digests[1] else [f"dataset file sha256: {digests[0]} vs {digests[1]}"]
    sa, sb = ({s["id"]: s for s in run["report"]["samples"]} for run in (a, b))
    shared = [i for i in sa if i in sb]
    other = [i for i in shared if any(sa[i].get(k) != sb[i].get(k)
                                      for k in ("original_sha256", "instruction", "category"))]
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        found.append(f"{len(other)} of {len(shared)} shared ids have another original image, instruction or "
                     f"category: {shown}")
    return found


def _interval(entry: dict[str, Any], key: str) -> list[float] | None:
    return entry.get(f"{key}_ci95")


def leaderboard_row(name: str, run: dict[str, Any]) -> dict[str, Any]:
    report = run["report"]
    o = report["overall"]
    return {"name": name, "folder": run["folder"], "editor": report.get("edit_model"),
            "judge": report.get("judge_model"), "scoring_mode": report.get("scoring_mode"),
            "mean_over_samples": o["mean_over_samples"], "mean_over_samples_ci95": _interval(o, "mean_over_samples"),
            "mean_over_categories": o["mean_over_categories"],
            "mean_over_categories_ci95": _interval(o, "mean_over_categories"),
            "counts": {k: o[k] for k in ("count", "scored", "unparsed", "failed")},
            "categories": {c: {"mean": s["mean"], "mean_ci95": s.get("mean_ci95"), "count": s["count"],
                               "scored": s["scored"]} for c, s in report["categories"].items()}}


def scored(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sample id -> result, for the samples the run scored."""
    return {s["id"]: s for s in run["report"]["samples"] if s["status"] == "ok"}


def paired(a: dict[str, Any], b: dict[str, Any], categories: list[str], names: tuple[str, str]) -> dict[str, Any]:
    """A minus B over the samples both scored: mean difference, its paired bootstrap interval, the sign-flip
    p-value and wins/ties/losses, overall and per category; a note instead when no sample was scored by both."""
    sa, sb = scored(a), scored(b)
    common = [i for i in sa if i in sb]
    if not common:
        shared = len(set(s["id"] for s in a["report"]["samples"]) & set(s["id"] for s in b["report"]["samples"]))
        return {"note": f"no sample was scored by both runs ({names[0]} scored {len(sa)}, {names[1]} scored "
                        f"{len(sb)}, {shared} ids in common): nothing to compare"}
    by_category = {c: [sa[i]["score"] - sb[i]["score"] for i in common if sa[i]["category"] == c]
                   for c in categories}

    def figures(diffs_by_category: dict[str, list[float]]) -> dict[str, Any]:
        diffs = [d for values in diffs_by_category.values() for d in values]
        return {"n": len(diffs), "mean_difference": mean(diffs),
                "mean_difference_ci95": paired_bootstrap(diffs_by_category), "p_value": sign_flip_p_value(diffs),
                **wins_ties_losses(diffs)}

    return {"overall": figures(by_category),
            "categories": {c: figures({c: d}) for c, d in by_category.items()}}


def compare(runs: dict[str, dict[str, Any]], allow_different_judges: bool = False,
            allow_different_data: bool = False) -> dict[str, Any]:
    """compare.json: the leaderboard, every pair (or why it is not compared), and the samples side by side."""
    names = list(runs)
    categories = list(dict.fromkeys(c for r in runs.values() for c in r["report"]["categories"]))
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs.append(compare_pair(runs, (a, b), categories, allow_different_judges, allow_different_data))
    return {"runs": [leaderboard_row(n, runs[n]) for n in names], "categories": categories, "pairs": pairs,
            "samples": side_by_side(runs), "method": {
                "interval": "95% paired bootstrap, samples resampled within categories, fixed seed",
                "p_value": "two-sided paired sign-flip permutation test (exact for up to 12 non-zero differences)",
                "difference": "first run minus second, over the samples both scored"}}


def compare_pair(runs: dict[str, dict[str, Any]], names: tuple[str, str], categories: list[str],
                 allow_different_judges: bool, allow_different_data: bool) -> dict[str, Any]:
    """One pair: what differs in its judging and its data, then its figures, or why it is not compared."""
    a, b = (runs[n] for n in names)
    differences, data = scale_differences(a, b), data_differences(a, b, names)
    pair = {"a": names[0], "b": names[1], "same_judging": not differences, "differences": differences,
            "same_data": not data, "data_differences": data}
    refusals = [(why, flag) for why, flag, found, allowed in (
        ("the two runs' scores are not on one scale", "--allow-different-judges", differences, allow_different_judges),
        ("the two runs' samples are not the same samples", "--allow-different-data", data, allow_different_data))
        if found and not allowed]
    if refusals:
        pair["refused"] = (f"not compared: {' and '.join(why for why, _ in refusals)} (pass "
                           f"{' '.join(flag for _, flag in refusals)} to show them anyway, with a warning)")
        return pair
    warnings = [f"{what}: " + "; ".join(found) for what, found in (("different judging", differences),
                                                                   ("different data", data)) if found]
    if warnings:
        pair["warning"] = " | ".join(warnings)
    pair.update(paired(a, b, categories, names))
    return pair


def pair_differences(pair: dict[str, Any]) -> str:
    """Everything that differs between a pair's runs, judging then data, as one line."""
    return "; ".join(pair["differences"] + pair["data_differences"])


def side_by_side(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every sample of any run with each run's score, the largest disagreement first."""
    rows: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        for s in run["report"]["samples"]:
            row = rows.setdefault(s["id"], {"id": s["id"], "category": s["category"],
                                            "instruction": s.get("instruction"), "scores": {}})
            row["scores"][name] = s["score"]
    for row in rows.values():
        values = [v for v in row["scores"].values() if v is not None]
        row["disagreement"] = max(values) - min(values) if len(values) > 1 else None
    return sorted(rows.values(), key=lambda r: (r["disagreement"] is None, -(r["disagreement"] or 0), r["id"]))



def markdown(result: dict[str, Any]) -> str:
    """compare.md: the leaderboard and the paired table."""
    cats = result["categories"]
    lines = ["# Run comparison", "", "## Leaderboard", "",
             "| run | editor | judge | mean over samples | mean over categories | scored | "
             + " | ".join(map(cell, cats)) + " |", "|---|---|---|---:|---:|---:|" + "---:|" * len(cats)]
    for r in result["runs"]:
        per = " | ".join(f"{number(r['categories'].get(c, {}).get('mean'))} "
                         f"{interval(r['categories'].get(c, {}).get('mean_ci95'))}" for c in cats)
        lines.append(f"| {cell(r['name'])} | {cell(r['editor'])} | {cell(r['judge'])} ({r['scoring_mode']}) | "
                     f"{number(r['mean_over_samples'])} {interval(r['mean_over_samples_ci95'])} | "
                     f"{number(r['mean_over_categories'])} {interval(r['mean_over_categories_ci95'])} | "
                     f"{r['counts']['scored']} of {r['counts']['count']} | {per} |")
    lines += ["", "## Paired differences (first minus second, samples both scored)", "",
              "| pair | scope | n | mean difference | 95% CI | p | wins / ties / losses |",
              "|---|---|---:|---:|---:|---:|---|"]
    for p in result["pairs"]:
        label = cell(f"{p['a']} − {p['b']}") + (" ⚠" if "warning" in p else "")
        if "refused" in p:
            lines.append(f"| {label} | – | | {cell(p['refused'] + ': ' + pair_differences(p))} | | | |")
            continue
        if "note" in p:
            lines.append(f"| {label} | – | 0 | {cell(p['note'])} | | | |")
            continue
        for scope, f in [("all", p["overall"]), *p["categories"].items()]:
            lines.append(f"| {label} | {cell(scope)} | {f['n']} | {number(f['mean_difference'])} | "
                         f"{interval(f['mean_difference_ci95'], 3)} | {number(f['p_value'], 4)} | "
                         f"{f['wins']} / {f['ties']} / {f['losses']} |")
        if "warning" in p:
            lines.append(f"\n⚠ {p['a']} − {p['b']}: {p['warning']}\n")
    return "\n".join(lines) + "\n"


def unique_names(folders: list[str]) -> list[str]:
    """Each run's folder name, with its parent's when two runs share a name, and a number if still the same."""
    names = [os.path.basename(os.path.abspath(f)) for f in folders]
    names = [os.path.join(*os.path.abspath(f).split(os.sep)[-2:]) if names.count(n) > 1 else n
             for f, n in zip(folders, names)]
    unique: list[str] = []
    for i, name in enumerate(names):
        if names.count(name) == 1 and name not in unique:
            unique.append(name)
            continue
        count = names[:i].count(name) + 1
        while f"{name} #{count}" in names or f"{name} #{count}" in unique:    # a run named so already ('a #1')
            count += 1
        unique.append(f"{name} #{count}")
    return unique


def main(argv: list[str] | None = None) -> int:
    """Load the runs, compare them, write the three files; returns the exit status."""
    from launch.compare.page import build_page

    parser = argparse.ArgumentParser(prog="python3 -m launch compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of scored runs")
    parser.add_argument("--output", required=True, help="folder for compare.json, compare.md and compare.html")
    parser.add_argument("--allow-different-judges", action="store_true",
                        help="compare runs whose judge, scoring mode or prompts differ, with a warning")
    parser.add_argument("--allow-different-data", action="store_true",
                        help="compare runs whose dataset file, or original image, instruction or category behind a "
                             "shared id, differ, pairing samples by id, with a warning")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two run folders")
    try:
        distinct_folders(args.runs)
        runs = dict(zip(unique_names(args.runs), map(load_run, args.runs)))
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = compare(runs, args.allow_different_judges, args.allow_different_data)
    os.makedirs(args.output, exist_ok=True)
    atomic_write_json(os.path.join(args.output, OUTPUTS[0]), result)
    atomic_write(os.path.join(args.output, OUTPUTS[1]), markdown(result).encode("utf-8"))
    atomic_write(os.path.join(args.output, OUTPUTS[2]), build_page(result, runs).encode("utf-8"))
    print(markdown(result))
    for name in OUTPUTS:
        print(f"[compare] wrote {os.path.join(args.output, name)}")
    for p in result["pairs"]:
        if "refused" in p:
            print(f"[compare] {p['a']} and {p['b']} were not compared: {pair_differences(p)}", file=sys.stderr)
        elif "note" in p:
            print(f"[compare] {p['a']} and {p['b']}: {p['note']}", file=sys.stderr)
    return 0

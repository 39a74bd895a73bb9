"""Two scored runs as a pair: whether their scores are on one scale and their samples the same samples, and their
paired figures. `launch compare` pairs every two runs it is given, a sweep's report each checkpoint with the base
model and with its predecessor: both through these functions, so that a difference means the same in both.

A minus B over the samples both scored: the mean difference, a paired bootstrap interval (resampled within
categories), a two-sided sign-flip permutation p-value and wins/ties/losses, overall and per category
(`shards.report.stats`). Standard library only.
"""

from __future__ import annotations

from typing import Any

from shards.report.stats import mean, paired_bootstrap, sign_flip_p_value, wins_ties_losses


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


def pair_identity(runs: dict[str, dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """A pair's names and what differs in its judging and its data (empty lists when its runs pair)."""
    a, b = (runs[n] for n in names)
    differences, data = scale_differences(a, b), data_differences(a, b, names)
    return {"a": names[0], "b": names[1], "same_judging": not differences, "differences": differences,
            "same_data": not data, "data_differences": data}


def compare_pair(runs: dict[str, dict[str, Any]], names: tuple[str, str], categories: list[str],
                 allow_different_judges: bool, allow_different_data: bool) -> dict[str, Any]:
    """One pair: what differs in its judging and its data, then its figures, or why it is not compared."""
    a, b = (runs[n] for n in names)
    pair = pair_identity(runs, names)
    differences, data = pair["differences"], pair["data_differences"]
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

"""sweep.json, sweep.md and sweep.html from a sweep's finished run folders: a pure function of them.

`write_sweep_report(sweep_dir, names, base)` is what the launcher calls once every checkpoint is scored, and what
`python3 -m launch sweep-report` calls to write the page again. Each checkpoint's run folder is
`<sweep_dir>/<name>/`, read through `launch.compare.inputs.load_run` (its report.json checked against its
definition); one that is missing or unreadable is refused naming the folder: the report is never partial. The
figures of each checkpoint are its report's own; every difference is a pair of runs as `launch compare` pairs
them (`launch.compare.pairs`). Standard library only.
"""

from __future__ import annotations

import os
from typing import Any

from launch.compare.inputs import CompareError, load_run
from launch.sweep.best import best_checkpoint, sweep_pair
from launch.sweep.order import checkpoint_order, step_number
from launch.sweep.page import build_page, markdown
from launch.sweep.schema import SWEEP_SCHEMA_VERSION, checked
from shards.files import atomic_write, atomic_write_json

OUTPUTS = ("sweep.json", "sweep.md", "sweep.html")
METHOD = {
    "order": "the base model first, then by the training step each name gives when every name gives one, "
             "else by natural sort (launch.sweep.order)",
    "means": "each checkpoint's report.json: means with 95% percentile bootstrap intervals, samples resampled "
             "within categories",
    "difference": "checkpoint minus the base model, and minus its predecessor, over the samples both scored",
    "interval": "95% paired bootstrap, samples resampled within categories, fixed seed",
    "p_value": "two-sided paired sign-flip permutation test (exact for up to 12 non-zero differences)",
    "best": "the highest mean over samples; distinguishable from the runner-up when the paired 95% interval "
            "lies above 0 and p < 0.05; best in resamples: share of bootstrap resamples (within categories, "
            "fixed seed) of the samples every checkpoint scored in which its mean is the highest (ties shared)",
}


class SweepError(ValueError):
    """A sweep whose report cannot be written; the message names the checkpoint's folder."""


def write_sweep_report(sweep_dir: str, names: list[str], base: str | None) -> dict[str, Any]:
    """Read every checkpoint's run folder and write sweep.json, sweep.md and sweep.html into `sweep_dir`.

    Args:
        sweep_dir: The sweep's folder, holding one run folder per checkpoint.
        names: The checkpoints' folder names, in any order (`launch.sweep.order` orders them).
        base: The base model's folder name (it need not be in `names`), or None when the sweep has none.

    Returns:
        sweep.json's content.

    Raises:
        SweepError: a name that is not a folder name, a checkpoint folder without a readable report.json (naming
            it and what is wrong), or no checkpoint at all.
    """
    order, rule = _order(names, base)
    runs = load_runs(sweep_dir, order)
    result = sweep_result(runs, order, rule, base)
    result = checked(result, os.path.join(sweep_dir, OUTPUTS[0]))
    atomic_write_json(os.path.join(sweep_dir, OUTPUTS[0]), result)
    atomic_write(os.path.join(sweep_dir, OUTPUTS[1]), markdown(result).encode("utf-8"))
    atomic_write(os.path.join(sweep_dir, OUTPUTS[2]), build_page(result).encode("utf-8"))
    return result


def _order(names: list[str], base: str | None) -> tuple[list[str], str]:
    for name in names + ([base] if base is not None else []):
        if not name or name in (".", "..") or "/" in name or (os.sep in name) or "\0" in name:
            raise SweepError(f"checkpoint name {name!r}: not a folder name in the sweep folder")
    try:
        order, rule = checkpoint_order(list(names), base)
    except ValueError as e:
        raise SweepError(str(e)) from None
    if not order:
        raise SweepError("no checkpoint to report on")
    return order, rule


def load_runs(sweep_dir: str, order: list[str]) -> dict[str, dict[str, Any]]:
    """Each checkpoint's run, by name, in order.

    Raises:
        SweepError: naming the first checkpoint folder that is missing or holds no readable report.json.
    """
    runs = {}
    for name in order:
        folder = os.path.join(sweep_dir, name)
        if not os.path.isdir(folder):
            raise SweepError(f"{folder}: checkpoint {name!r} has no run folder in the sweep")
        try:
            runs[name] = load_run(folder)
        except CompareError as e:
            raise SweepError(f"checkpoint {name!r}: {e}") from None
    return runs


def sweep_result(runs: dict[str, dict[str, Any]], order: list[str], rule: str, base: str | None) -> dict[str, Any]:
    """sweep.json's content (its definition: `launch.sweep.schema.SweepReport`) from the loaded runs in order."""
    categories = list(dict.fromkeys(c for n in order for c in runs[n]["report"]["categories"]))
    first = runs[order[0]]["report"]
    return {"schema_version": SWEEP_SCHEMA_VERSION, "base": base, "order": rule,
            "judge": f"{first['judge_model']} ({first['scoring_mode']})", "categories": categories,
            "checkpoints": [checkpoint_row(n, runs[n], n == base) for n in order],
            "pairs": sweep_pairs(runs, order, base, categories),
            "best": best_checkpoint(runs, order, categories), "method": METHOD}


def _counts(figures: dict[str, Any]) -> dict[str, int]:
    return {k: figures[k] for k in ("count", "scored", "unparsed", "failed")}


def checkpoint_row(name: str, run: dict[str, Any], is_base: bool) -> dict[str, Any]:
    """One checkpoint's figures, as its report gives them."""
    report, o = run["report"], run["report"]["overall"]
    has_page = os.path.isfile(os.path.join(run["folder"], "report.html"))
    return {"name": name, "step": None if is_base else step_number(name), "base": is_base,
            "report": f"{name}/report.html" if has_page else None, "editor": report["edit_model"],
            **{k: o[k] for k in ("mean_over_samples", "mean_over_samples_ci95", "mean_over_categories",
                                 "mean_over_categories_ci95")},
            "counts": _counts(o),
            "categories": {c: {"mean": s["mean"], "mean_ci95": s["mean_ci95"], "counts": _counts(s)}
                           for c, s in report["categories"].items()}}


def sweep_pairs(runs: dict[str, dict[str, Any]], order: list[str], base: str | None,
                categories: list[str]) -> list[dict[str, Any]]:
    """Each checkpoint after the first against the base model and against its predecessor; one pair, marked
    as both, when the predecessor is the base."""
    pairs = []
    for i, name in enumerate(order[1:], start=1):
        against: dict[str, list[str]] = {}
        if base is not None and name != base:
            against.setdefault(base, []).append("base")
        against.setdefault(order[i - 1], []).append("previous")
        for other, why in against.items():
            pairs.append({**sweep_pair(runs, (name, other), categories), "against": why})
    return pairs

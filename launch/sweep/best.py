"""The best checkpoint of a sweep, and how sure that is.

The best is the checkpoint with the highest mean over samples (its report's figure; the base model competes too:
a sweep whose training made things worse says so). How sure: its paired difference against the runner-up (the
next highest mean), computed as every pair of the sweep is (`launch.compare.pairs`), and the share of bootstrap
resamples of the samples every checkpoint scored in which each checkpoint has the highest mean
(`shards.report.stats.best_fractions`, seeded). The best is called distinguishable from the runner-up only when the
paired 95 % interval lies above zero and the sign-flip p is below 0.05; otherwise the statement says plainly that
it is not. Standard library only.
"""

from __future__ import annotations

from typing import Any

from launch.compare.pairs import pair_identity, paired, scored
from shards.report.numbers import interval, number
from shards.report.stats import RESAMPLES, best_fractions

LEVEL = 0.05


def sweep_pair(runs: dict[str, dict[str, Any]], names: tuple[str, str], categories: list[str]) -> dict[str, Any]:
    """A minus B as `launch compare` pairs them: refused, naming what differs, when their judging or their data
    differ (a sweep has no flag to show such a pair anyway: its runs share one config); a note when no sample was
    scored by both."""
    pair = pair_identity(runs, names)
    reasons = [why for why, found in (("the two runs' scores are not on one scale", pair["differences"]),
                                      ("the two runs' samples are not the same samples", pair["data_differences"]))
               if found]
    if reasons:
        pair["refused"] = f"not compared: {' and '.join(reasons)}"
        return pair
    pair.update(paired(runs[names[0]], runs[names[1]], categories, names))
    return pair


def best_checkpoint(runs: dict[str, dict[str, Any]], order: list[str], categories: list[str]) -> dict[str, Any]:
    """sweep.json's `best`: the highest mean over samples (the earlier checkpoint on a tie), the runner-up, their
    paired difference, each checkpoint's share of the resamples in which it is best, and a sentence."""
    means = {n: runs[n]["report"]["overall"]["mean_over_samples"] for n in order}
    ranked = sorted((n for n in order if means[n] is not None), key=lambda n: -means[n])
    best = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    against = {**sweep_pair(runs, (best, runner_up), categories), "against": []} if runner_up else None
    figures = (against or {}).get("overall")
    distinguishable = None if figures is None else bool(
        figures["mean_difference_ci95"] and figures["mean_difference_ci95"][0] > 0 and figures["p_value"] < LEVEL)
    fractions, common = resampled_best(runs, ranked, categories)
    found = {"name": best, "runner_up": runner_up, "against_runner_up": against, "distinguishable": distinguishable,
             "best_in_resamples": fractions, "samples_in_resamples": common}
    return {**found, "statement": statement(found, means, runs)}


def resampled_best(runs: dict[str, dict[str, Any]], candidates: list[str],
                   categories: list[str]) -> tuple[dict[str, float] | None, int]:
    """Each candidate's share of the resamples in which it is best, over the samples all of them scored, and how
    many samples that is; (None, n) when some candidate's run cannot be paired with the first's, or with fewer
    than two candidates."""
    if len(candidates) < 2 or any(
            pair_identity(runs, (candidates[0], n))["differences"] or
            pair_identity(runs, (candidates[0], n))["data_differences"] for n in candidates[1:]):
        return None, 0
    by_name = {n: scored(runs[n]) for n in candidates}
    common = [i for i in by_name[candidates[0]] if all(i in by_name[n] for n in candidates)]
    rows = {c: [[by_name[n][i]["score"] for n in candidates] for i in common
                if by_name[candidates[0]][i]["category"] == c] for c in categories}
    fractions = best_fractions(rows)
    return (None if fractions is None else dict(zip(candidates, fractions))), len(common)


def statement(found: dict[str, Any], means: dict[str, float | None], runs: dict[str, dict[str, Any]]) -> str:
    """The best checkpoint and how sure that is, in one paragraph for a person."""
    best, runner_up, against = found["name"], found["runner_up"], found["against_runner_up"]
    if best is None:
        return "No checkpoint scored a sample: there is no best."
    overall = runs[best]["report"]["overall"]
    text = (f"{best} has the highest mean over samples: {number(means[best])} "
            f"{interval(overall['mean_over_samples_ci95'])} ({overall['scored']} of {overall['count']} samples "
            "scored).")
    if runner_up is None:
        return text + " It is the only checkpoint with a score: nothing to rank it against."
    text += f" The runner-up is {runner_up} ({number(means[runner_up])})."
    if "refused" in against:
        text += (f" The two cannot be paired ({against['refused']}: "
                 f"{'; '.join(against['differences'] + against['data_differences'])}).")
    elif "note" in against:
        text += f" The two cannot be paired: {against['note']}."
    else:
        f = against["overall"]
        verdict = (f"{best} is better than {runner_up}" if found["distinguishable"] else
                   f"{best} is NOT distinguishable from {runner_up}")
        text += (f" Paired over the {f['n']} samples both scored, {best} minus {runner_up} is "
                 f"{number(f['mean_difference'])} {interval(f['mean_difference_ci95'], 3)}, p = "
                 f"{number(f['p_value'], 4)}: {verdict} (95 % interval above 0 and p < {LEVEL} needed).")
    if found["best_in_resamples"] is not None:
        share = found["best_in_resamples"][best]
        text += (f" {best} is best in {share:.0%} of {RESAMPLES} bootstrap resamples of the "
                 f"{found['samples_in_resamples']} samples every checkpoint scored.")
    return text

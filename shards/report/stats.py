"""The statistics of reports and comparisons: bootstrap intervals, a paired test, agreement with human ratings.

Small pure functions, standard library only (the launcher's `compare` runs without any stage environment), with
fixed seeds so that the same scores always give the same intervals. Each takes plain lists of floats.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Sequence

RESAMPLES = 2000          # bootstrap resamples (a 95 % interval wants at least 1,000)
PERMUTATIONS = 10000      # sign flips drawn when there are too many samples to flip every way
EXACT_FLIPS_UP_TO = 12    # with at most this many non-zero differences every sign assignment is tried
SEED = 0


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _percentile_interval(draws: list[float], level: float) -> list[float] | None:
    if not draws:
        return None
    draws = sorted(draws)
    tail = (1 - level) / 2
    low = draws[min(len(draws) - 1, max(0, math.floor(tail * len(draws))))]
    high = draws[min(len(draws) - 1, max(0, math.ceil((1 - tail) * len(draws)) - 1))]
    return [low, high]


def bootstrap_means(by_category: dict[str, list[float]], resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = 0.95) -> dict:
    """95 % percentile bootstrap intervals of each category's mean and of both overall means, resampling the
    values with replacement within each category (so every resample keeps each category's size).

    Returns:
        {"categories": {name: [low, high] or None}, "mean_over_samples": [low, high] or None,
         "mean_over_categories": [low, high] or None}; None where there is no value to resample.
    """
    rng = random.Random(seed)
    filled = {name: values for name, values in by_category.items() if values}
    per_category: dict[str, list[float]] = {name: [] for name in filled}
    over_samples, over_categories = [], []
    total = sum(len(v) for v in filled.values())
    for _ in range(resamples if filled else 0):
        sums = {name: sum(rng.choices(values, k=len(values))) for name, values in filled.items()}
        means = {name: sums[name] / len(filled[name]) for name in filled}
        for name, value in means.items():
            per_category[name].append(value)
        over_samples.append(sum(sums.values()) / total)
        over_categories.append(sum(means.values()) / len(means))
    return {"categories": {name: _percentile_interval(per_category.get(name, []), level) for name in by_category},
            "mean_over_samples": _percentile_interval(over_samples, level),
            "mean_over_categories": _percentile_interval(over_categories, level)}


def paired_bootstrap(differences: dict[str, list[float]], resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = 0.95) -> list[float] | None:
    """95 % interval of the mean paired difference over all samples, resampling within categories."""
    return bootstrap_means(differences, resamples, seed, level)["mean_over_samples"]


def sign_flip_p_value(differences: Sequence[float], permutations: int = PERMUTATIONS, seed: int = SEED) -> float | None:
    """Two-sided p-value of a paired permutation test: how often flipping the signs of the differences at random
    gives a mean at least as far from zero as the one seen. Exact (every sign assignment) for up to
    `EXACT_FLIPS_UP_TO` non-zero differences; otherwise `permutations` random flips, counted with the seen one
    ((k + 1) / (n + 1)), so the p-value is never zero. None without differences."""
    if not differences:
        return None
    observed = abs(sum(differences))
    nonzero = [d for d in differences if d != 0]
    tolerance = 1e-12 * max(1.0, observed)
    if len(nonzero) <= EXACT_FLIPS_UP_TO:
        hits = sum(abs(sum(s * d for s, d in zip(signs, nonzero))) >= observed - tolerance
                   for signs in itertools.product((1, -1), repeat=len(nonzero)))
        return hits / 2 ** len(nonzero)
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) >= observed - tolerance
               for _ in range(permutations))
    return (hits + 1) / (permutations + 1)


def best_fractions(by_category: dict[str, list[list[float]]], resamples: int = RESAMPLES,
                   seed: int = SEED) -> list[float] | None:
    """How often each candidate has the highest mean over all samples when the samples are resampled with
    replacement within each category: the samples are paired (each row is one sample's scores, one per candidate,
    every row as long), so a resample keeps each sample's scores together. A resample in which k candidates tie
    for the highest mean counts 1/k to each. None without a sample."""
    filled = [rows for rows in by_category.values() if rows]
    if not filled:
        return None
    columns = [list(zip(*rows)) for rows in filled]           # per category, each candidate's scores
    width = len(filled[0][0])
    rng = random.Random(seed)
    wins = [0.0] * width
    for _ in range(resamples):
        picks = [rng.choices(range(len(rows)), k=len(rows)) for rows in filled]
        # Every candidate sums the same number of scores, so the highest sum is the highest mean.
        sums = [sum(sum(map(cols[j].__getitem__, idx)) for cols, idx in zip(columns, picks)) for j in range(width)]
        top = max(sums)
        best = [j for j, s in enumerate(sums) if s >= top - 1e-9 * max(1.0, abs(top))]
        for j in best:
            wins[j] += 1 / len(best)
    return [w / resamples for w in wins]


def wins_ties_losses(differences: Sequence[float]) -> dict[str, int]:
    return {"wins": sum(d > 0 for d in differences), "ties": sum(d == 0 for d in differences),
            "losses": sum(d < 0 for d in differences)}


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    mx, my = mean(x), mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks (ties at mean ranks); None if either side is constant
    or there are fewer than two pairs."""
    return _pearson(_ranks(x), _ranks(y)) if len(x) >= 2 else None


def _pair_signs(x: Sequence[float], y: Sequence[float]):
    for i, j in itertools.combinations(range(len(x)), 2):
        yield (x[i] > x[j]) - (x[i] < x[j]), (y[i] > y[j]) - (y[i] < y[j])


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b, which corrects for ties on either side; None if either side is constant."""
    concordant = discordant = tied_x = tied_y = 0
    for sx, sy in _pair_signs(x, y):
        if sx == 0 and sy == 0:
            continue
        if sx == 0:
            tied_x += 1
        elif sy == 0:
            tied_y += 1
        elif sx == sy:
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + tied_x) * (concordant + discordant + tied_y))
    return None if denominator == 0 else (concordant - discordant) / denominator


def pairwise_accuracy(judge: Sequence[float], human: Sequence[float]) -> float | None:
    """The share of sample pairs the humans rank differently that the judge orders the same way (a judge tie
    counts half); None if the humans rank no pair differently."""
    agree = pairs = 0.0
    for sj, sh in _pair_signs(judge, human):
        if sh == 0:
            continue
        pairs += 1
        agree += 1.0 if sj == sh else 0.5 if sj == 0 else 0.0
    return agree / pairs if pairs else None


def agreement(judge: Sequence[float], human: Sequence[float]) -> dict:
    """Spearman's rho, Kendall's tau-b and pairwise accuracy between judge and human scores, with n."""
    return {"n": len(judge), "spearman": spearman(judge, human), "kendall_tau_b": kendall_tau_b(judge, human),
            "pairwise_accuracy": pairwise_accuracy(judge, human)}

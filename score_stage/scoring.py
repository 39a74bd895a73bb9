"""Scores from a judge's next-token probabilities, and the rules that combine several dimensions' scores.

`expected` mode reads the judge's probabilities at the position right after the answer prefix ("Score: ") and
reports the probability-weighted score sum p(s)*s over s = 0..10, renormalised over those valid scores (the
G-Eval idea). Nothing is parsed, so no answer is ever `unparsed`.

Qwen tokenizers write numbers one digit a token, so "10" is "1" then "0": the first step gives p("0")..p("9"), and
a second step, after a forced "1", splits p("1") into the score 1 (the number ends there) and the score 10 (a "0"
follows). A "1" followed by another digit (11..19) is not a valid score and, like any other non-digit first
token, is left out of the renormalisation; its share is kept as `valid_mass` = the probability the judge gave to
valid scores at all.
"""

from __future__ import annotations

import math

import torch

SCORES = tuple(range(11))


def score_distribution(first: torch.Tensor, after_one: torch.Tensor, digit_ids: list[int]) -> tuple[list[float], float]:
    """P(score = s) for s = 0..10, renormalised over the valid scores, and the mass they had before that.

    Args:
        first: Next-token logits right after the answer prefix (vocabulary-sized, 1-D).
        after_one: Next-token logits after the prefix and a "1".
        digit_ids: Token ids of "0".."9", in order.

    Returns:
        (distribution, valid_mass): 11 probabilities summing to 1, and the unnormalised probability of a valid score.
    """
    p = torch.softmax(first.double(), dim=-1)[digit_ids]
    q = torch.softmax(after_one.double(), dim=-1)[digit_ids]
    return digit_distribution(p, q)


def digit_distribution(p: torch.Tensor, q: torch.Tensor) -> tuple[list[float], float]:
    """P(score = s) for s = 0..10 from the digits' probabilities right after the prefix (`p`) and after the
    prefix and a "1" (`q`), each a float64 tensor of 10 in the order "0".."9"; and the valid mass. Both judges,
    in process and served, compute a score's distribution here.
    """
    ends_after_one = 1.0 - q.sum()                       # the number is "1": no further digit follows
    raw = torch.cat([p[:1], (p[1] * ends_after_one).reshape(1), p[2:], (p[1] * q[0]).reshape(1)])
    mass = raw.sum()
    return (raw / mass).tolist(), float(mass)


def expected_score(distribution: list[float]) -> float:
    """sum p(s) * s over s = 0..10."""
    return sum(p * s for p, s in zip(distribution, SCORES))


def combine(scores: list[float], rule: str) -> float:
    """A sample's score from its dimensions' scores, by `rule` (min, mean or geometric_mean)."""
    if rule == "min":
        return min(scores)
    if rule == "mean":
        return sum(scores) / len(scores)
    if rule == "geometric_mean":
        return math.prod(scores) ** (1.0 / len(scores))
    raise ValueError(f"unknown combine rule '{rule}' (min, mean or geometric_mean)")

"""The report's and the comparison's statistics against hand computations on small fixed cases."""

import random

import pytest

from shards.report.stats import (agreement, bootstrap_means, kendall_tau_b, pairwise_accuracy, sign_flip_p_value,
                                 spearman, wins_ties_losses)


def test_a_bootstrap_of_two_values_spans_them():
    # Resampled means of [0, 1] are 0, 0.5 or 1 with chances 1/4, 1/2, 1/4: the 2.5 % and 97.5 % points are 0 and 1.
    assert bootstrap_means({"a": [0.0, 1.0]})["categories"]["a"] == [0.0, 1.0]


def test_resampling_within_categories_keeps_each_categorys_size():
    # Constant categories of sizes 1 and 3: every resample has the same means, so the intervals are points.
    found = bootstrap_means({"a": [0.0], "b": [4.0, 4.0, 4.0], "c": []})
    assert found["categories"] == {"a": [0.0, 0.0], "b": [4.0, 4.0], "c": None}
    assert found["mean_over_samples"] == [3.0, 3.0]                 # (0 + 3 * 4) / 4 in every resample
    assert found["mean_over_categories"] == [2.0, 2.0]              # (0 + 4) / 2


def test_a_bootstrap_is_repeatable_and_covers_the_mean():
    rng = random.Random(1)
    data = {"a": [rng.uniform(0, 10) for _ in range(40)], "b": [rng.uniform(3, 7) for _ in range(25)]}
    first, second = bootstrap_means(data), bootstrap_means(data)
    assert first == second                                           # a fixed seed
    low, high = first["categories"]["a"]
    assert low < sum(data["a"]) / 40 < high and high - low < 4
    assert first["categories"]["b"][1] - first["categories"]["b"][0] < high - low   # less spread, narrower


def test_the_sign_flip_test_matches_every_assignment_counted_by_hand():
    # Sums of +-1 +-2 +-3: 6, 4, 2, 0, 0, -2, -4, -6; two of eight are as far from zero as 6.
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_p_value([1.0, -1.0]) == 1.0
    assert sign_flip_p_value([0.5, 0.0, 0.0]) == 1.0                 # zeros cannot flip: one of two is as far
    assert sign_flip_p_value([]) is None
    many = sign_flip_p_value([1.0] * 30)                             # Monte Carlo: never zero, and tiny
    assert 0 < many < 0.001


def test_rank_agreement_matches_hand_computation():
    x, y = [1, 2, 3, 4], [1, 3, 2, 4]
    assert spearman(x, y) == pytest.approx(1 - 6 * 2 / (4 * 15))    # 0.8
    assert kendall_tau_b(x, y) == pytest.approx((5 - 1) / 6)
    assert pairwise_accuracy(x, y) == pytest.approx(5 / 6)
    # Ties: tau-b divides by sqrt((C + D + ties in x)(C + D + ties in y)) = sqrt(3 * 2); a judge tie counts half.
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 6 ** 0.5)
    assert pairwise_accuracy([1, 1, 2], [1, 2, 3]) == pytest.approx(2.5 / 3)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and pairwise_accuracy([1, 2], [5, 5]) is None
    assert agreement(x, y)["n"] == 4


def test_wins_ties_losses():
    assert wins_ties_losses([0.5, 0.0, -1.0, 2.0]) == {"wins": 2, "ties": 1, "losses": 1}


def test_how_often_each_candidate_is_best_over_resampled_samples():
    from shards.report.stats import best_fractions

    # One sample scored 5 and 3: the first is best in every resample; equal scores share each resample.
    assert best_fractions({"a": [[5.0, 3.0]]}) == [1.0, 0.0]
    assert best_fractions({"a": [[4.0, 4.0, 1.0]]}) == [0.5, 0.5, 0.0]
    # Samples (6, 5) and (5, 5) drawn twice with replacement: both first 1/4 (12 vs 10), both second 1/4 (a tie),
    # one of each 1/2 (11 vs 10): the first is best in 1/4 + 1/4 / 2 + 1/2 = 0.875 of resamples.
    found = best_fractions({"a": [[6.0, 5.0], [5.0, 5.0]]})
    assert found[0] == pytest.approx(0.875, abs=0.03) and sum(found) == pytest.approx(1.0)
    assert found == best_fractions({"a": [[6.0, 5.0], [5.0, 5.0]]})     # a fixed seed
    # Within categories: category b's three samples stay three in every resample, so the first's 10 always beats
    # the second's 3 (resampled across categories, b's samples would sometimes be drawn four times: 0 vs 4).
    assert best_fractions({"a": [[10.0, 0.0]], "b": [[0.0, 1.0]] * 3}) == [1.0, 0.0]
    assert best_fractions({"a": []}) is None

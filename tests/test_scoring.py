"""Expected scores from next-token logits (1 versus 10 included), combine rules, and a sample's assembled result."""


import pytest
import torch

from score_stage.results import describe, failed_result, sample_result
from score_stage.scoring import combine, expected_score, score_distribution

VOCAB = 20
DIGITS = list(range(5, 15))          # token ids of "0".."9" in this made-up vocabulary


def _logits(probabilities: dict[int, float]) -> torch.Tensor:
    """Logits whose softmax gives `probabilities` (token id -> p); the rest of the mass on token 0 (not a digit)."""
    p = torch.full((VOCAB,), 1e-12, dtype=torch.float64)
    for token, value in probabilities.items():
        p[token] = value
    p[0] = max(1.0 - sum(probabilities.values()), 1e-12)
    return p.log().float()


def _digit(d: int) -> int:
    return DIGITS[d]


def test_one_then_zero_is_ten_and_one_then_anything_else_is_one():
    first = _logits({_digit(1): 1.0})
    ten, _ = score_distribution(first, _logits({_digit(0): 1.0}), DIGITS)
    one, _ = score_distribution(first, _logits({}), DIGITS)              # "1" then a non-digit: the score is 1
    assert ten[10] == pytest.approx(1.0, abs=1e-6) and expected_score(ten) == pytest.approx(10.0, abs=1e-5)
    assert one[1] == pytest.approx(1.0, abs=1e-6) and expected_score(one) == pytest.approx(1.0, abs=1e-5)


def test_a_split_one_branch_is_weighed_by_hand():
    # p("1") = 0.5, p("7") = 0.3, p("0") = 0.1, 0.1 elsewhere; after "1": p("0") = 0.6, p("5") = 0.1 (15: invalid).
    first = _logits({_digit(1): 0.5, _digit(7): 0.3, _digit(0): 0.1})
    after_one = _logits({_digit(0): 0.6, _digit(5): 0.1})
    distribution, mass = score_distribution(first, after_one, DIGITS)
    raw = {0: 0.1, 1: 0.5 * 0.3, 7: 0.3, 10: 0.5 * 0.6}                  # 1: the number ends after "1"
    total = sum(raw.values())
    assert mass == pytest.approx(total, rel=1e-5)
    assert distribution == pytest.approx([raw.get(s, 0.0) / total for s in range(11)], abs=1e-6)
    assert expected_score(distribution) == pytest.approx(sum(s * p for s, p in raw.items()) / total, rel=1e-5)


def test_any_logits_give_a_distribution_over_0_to_10_and_a_score_in_range():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        first, after_one = torch.randn(2, VOCAB, generator=generator) * 5
        distribution, mass = score_distribution(first, after_one, DIGITS)
        assert len(distribution) == 11 and sum(distribution) == pytest.approx(1.0)
        assert all(p >= 0 for p in distribution) and 0 < mass <= 1
        assert 0.0 <= expected_score(distribution) <= 10.0


@pytest.mark.parametrize("rule, expected", [("min", 4.0), ("mean", 6.0), ("geometric_mean", (4 * 8 * 6.0) ** (1 / 3))])
def test_combine_rules(rule, expected):
    assert combine([4.0, 8.0, 6.0], rule) == pytest.approx(expected)


def test_geometric_mean_of_two_is_gedit_benchs_overall():
    assert combine([9.0, 4.0], "geometric_mean") == pytest.approx(6.0)
    assert combine([0.0, 10.0], "geometric_mean") == 0.0


ENTRY = {"id": "phys-01", "category": "物理", "instruction": "drop it", "sha256": "ab"}


def test_two_dimensions_combine_into_the_sample_score_by_the_rule():
    answers = {"reasoning": {"score": 9.0, "response": "Score: 9\nIt fell."},
               "quality": {"score": 4.0, "response": "Score: 4\nBlurry."}}
    for rule, expected in [("min", 4.0), ("mean", 6.5), ("geometric_mean", 6.0)]:
        result = sample_result(ENTRY, answers, rule, rank=1, world_size=2, seconds=0.5)
        assert result["score"] == pytest.approx(expected) and result["status"] == "ok"
    assert result["response"] == "[reasoning] Score: 9\nIt fell.\n[quality] Score: 4\nBlurry."
    assert result["image_sha256"] == "ab" and result["dimensions"] == answers


def test_a_dimension_without_a_score_leaves_the_sample_unparsed_but_keeps_the_other():
    answers = {"reasoning": {"score": 7.0, "response": "Score: 7"}, "quality": {"score": None, "response": "hmm"}}
    result = sample_result(ENTRY, answers, "min", rank=0, world_size=1, seconds=1.0)
    assert result["score"] is None and result["status"] == "unparsed"
    assert result["dimensions"]["reasoning"]["score"] == 7.0
    assert describe(result).startswith("物理/phys-01 score=unparsed | reasoning=7 Score: 7 quality=unparsed hmm")


def test_an_expected_mode_line_shows_the_likeliest_scores():
    distribution = [0.0] * 11
    distribution[7], distribution[8], distribution[2] = 0.6, 0.3, 0.1
    answer = {"score": expected_score(distribution), "distribution": distribution, "valid_mass": 0.97}
    result = sample_result(ENTRY, {"score": answer}, "mean", rank=0, world_size=1, seconds=1.0)
    assert result["response"] is None
    assert describe(result) == "物理/phys-01 score=6.8 | score=6.80 (P 7:0.60 8:0.30)"


def test_a_failed_sample_keeps_its_reason_and_has_no_score():
    result = failed_result({**ENTRY, "status": "failed", "reason": "image file not found"})
    assert (result["score"], result["status"], result["reason"]) == (None, "failed", "image file not found")

"""extract_score: the accepted forms give the number; text with no valid score gives None, never a default."""

import pytest

from score_stage.parsing import extract_score


@pytest.mark.parametrize("text, expected", [
    ("Score: 8.5", 8.5),
    ("8.500", 8.5),                       # the seed system's parser defaulted this to 5.0
    ("评分：8", 8.0),
    ("评分: 6.5", 6.5),
    ("7/10", 7.0),
    ("7 out of 10", 7.0),
    ('{"score": 7}', 7.0),
    ('The answer: {"reason": "ok", "score": "6.5"}', 6.5),
    ("**Score:** 6", 6.0),
    ("The glass shatters on the floor, as it should.\nScore: 9", 9.0),
    ("Score: 4. On reflection, final score: 6", 6.0),   # the last stated score wins
    ("I give it 10/10.", 10.0),
    (" 10 \n", 10.0),
    ("0", 0.0),
    ("Score: 0", 0.0),
])
def test_accepted_forms(text, expected):
    assert extract_score(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "no number here",
    "Score: X.XXX",             # the format echoed back
    "Score: 85",                # out of range: not clipped, not guessed
    "Score: -3",
    '{"score": 11}',
    "the 3 cats sit on 2 mats",  # numbers that are not a score
    "8/10.5",
    "-3",
    '{"score": true}',
    "ke��tȍ述̏",
])
def test_no_valid_score_gives_none(text):
    assert extract_score(text) is None


def test_a_trusted_out_of_range_score_is_not_replaced_by_a_weaker_form():
    assert extract_score("Score: 42\n7/10") is None

"""Reading a 0-10 score out of a judge's free-text answer.

A text without a valid score gives None: the sample is reported `unparsed`, never given a default number
(the system this replaces scored every such answer 5.0, and its users only noticed because every mean was 5.000).
"""

from __future__ import annotations

import json
import re

_NUMBER = r"(\d+(?:\.\d+)?)"
# In order of trust; within one form the last occurrence wins, as judges state their final score last.
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_LABELLED = re.compile(r"(?:score|rating|评分|得分|分数)\s*\**\s*[:：=]\s*\**\s*" + _NUMBER, re.IGNORECASE)
_OUT_OF_TEN = re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*10(?!\d|\.\d)", re.IGNORECASE)
_BARE = re.compile(r"[\s*\"'`]*" + _NUMBER + r"[\s*\"'`.]*")

MIN_SCORE, MAX_SCORE = 0.0, 10.0


def extract_score(text: str) -> float | None:
    """The judge's 0-10 score in `text`, or None if it states no valid one.

    Accepted forms: a JSON object with a "score" key ({"score": 7}), a labelled score ("Score: 8.5",
    "评分：8"), a fraction of ten ("7/10", "7 out of 10"), or a bare number as the whole answer ("8.500").
    A number outside 0-10 in the most trusted form present makes the answer invalid: no weaker form is tried.
    """
    for find in (_json_score, _labelled_score, _out_of_ten_score, _bare_score):
        found = find(text)
        if found is not None:
            return found if MIN_SCORE <= found <= MAX_SCORE else None
    return None


def _json_score(text: str) -> float | None:
    for candidate in reversed(_JSON_OBJECT.findall(text)):
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        value = next((v for k, v in obj.items() if k.lower() == "score"), None) if isinstance(obj, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(_NUMBER, value.strip()):
            return float(value)
    return None


def _labelled_score(text: str) -> float | None:
    matches = _LABELLED.findall(text)
    return float(matches[-1]) if matches else None


def _out_of_ten_score(text: str) -> float | None:
    matches = _OUT_OF_TEN.findall(text)
    return float(matches[-1]) if matches else None


def _bare_score(text: str) -> float | None:
    match = _BARE.fullmatch(text)
    return float(match.group(1)) if match else None

"""GEdit-Bench's VIEScore ("tie" task; Step1X-Edit `GEdit-Bench/viescore/__init__.py`): two questions a sample,
the same for every task type. SC (the original, then the edit) asks for [editing success, over-editing] and PQ
(the edit alone) for [naturalness, artifacts], each 0-10, answered as `{"score": [a, b], "reasoning": "..."}`;
SC and PQ are each the smaller of their two, the sample's O = sqrt(SC * PQ). `<instruction>` is replaced, not
formatted. Parsing follows `mllm_output_to_dict` (the JSON between the first `{` and the last `}`, else a bare
`[a, b]`), without its last resort, a random integer for an answer it cannot read."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from score_stage.protocols import Question

_BARE_LIST = re.compile(r"^\[\d+, ?\d+\]$")


def questions(entry: dict[str, Any], prompts: dict[str, str]) -> list[Question]:
    sc = "\n".join([prompts["_context_no_delimit"], prompts["_prompts_0shot_two_image_edit_rule"],
                    prompts["_prompts_0shot_tie_rule_SC"]]).replace("<instruction>", entry["instruction"])
    pq = "\n".join([prompts["_context_no_delimit"], prompts["_prompts_0shot_rule_PQ"]])
    return [Question("SC", sc, (("original", None), ("edited", None)), ("semantics",)),
            Question("PQ", pq, (("edited", None),), ("quality",))]


def read(question: Question, text: str) -> list[float] | None:
    """[min of the score list] when the answer holds a list of 0-10 integers, else None."""
    scores = _scores(text.strip())
    if not scores or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 10
                             for s in scores):
        return None
    return [min(scores)]


def _scores(text: str) -> list | None:
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            found = json.loads(text[start:end + 1]).get("score")
        except (json.JSONDecodeError, AttributeError):
            return None
        return found if isinstance(found, list) else [found] if found is not None else None
    if _BARE_LIST.match(text):
        return json.loads(text)
    return [int(text)] if text.isdigit() and 0 <= int(text) <= 10 else None


def sample_score(category: str, dimensions: dict[str, dict[str, Any]]) -> float:
    return math.sqrt(dimensions["semantics"]["score"] * dimensions["quality"]["score"])

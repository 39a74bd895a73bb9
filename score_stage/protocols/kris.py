"""KRIS-Bench (`metrics_common.py`, `metrics_knowledge.py`, `metrics_view_change.py`): three questions a sample, each
the prompt text then labelled pictures. VC (`prompt_consist`, original and edit), VQ (`prompt_quality`, the edit),
and IF: for the ten knowledge tasks IF and KP together (`prompt_dual_evaluation`, with the explanation), for
viewpoint change with the ground truth as a third picture (`prompt_view_instruction_following`), else
`prompt_instruction_following` (anomaly correction too: the scorer's test for its own prompt never matches).
Scores 1-5 under the JSON keys the prompts ask for; read as the scorer reads them (the key's object, then
`key: N`, `N/5`, `N out of 5`), except its last resort, the first digit 1-5 anywhere in the answer, which
guesses. Samples of the multi-image tasks are not imported."""

from __future__ import annotations

import json
import re
from typing import Any

from score_stage.protocols import Question

KNOWLEDGE = ("abstract_reasoning", "mathematics", "practical_knowledge", "medicine", "rule-based_reasoning",
             "biology", "geography", "chemistry", "humanities", "physics")
ORIGINAL, EDITED = ("original", "This is the original image:"), ("edited", "This is the edited image:")
PROMPT_NAMES = ("prompt_consist", "prompt_quality", "prompt_instruction_following", "prompt_dual_evaluation",
                "prompt_view_instruction_following")
KEYS = {"consistency": "consistency_score", "quality": "quality_score", "instruction": "instruction_score",
        "knowledge": "knowledge_score"}


def questions(entry: dict[str, Any], prompts: dict[str, str]) -> list[Question]:
    task, extra = entry["category"], entry.get("extra") or {}
    fill = {"instruct": entry["instruction"], "explanation": extra.get("explanation", "")}
    if task in KNOWLEDGE:
        follow = Question("IF", prompts["prompt_dual_evaluation"].format(**fill), (ORIGINAL, EDITED),
                          ("instruction", "knowledge"))
    elif task == "viewpoint_change":
        follow = Question("IF", prompts["prompt_view_instruction_following"].format(**fill),
                          (ORIGINAL, EDITED, ("reference", "This is the ground truth image:")), ("instruction",))
    else:
        follow = Question("IF", prompts["prompt_instruction_following"].format(**fill), (ORIGINAL, EDITED),
                          ("instruction",))
    return [Question("VC", prompts["prompt_consist"].format(**fill), (ORIGINAL, EDITED), ("consistency",)), follow,
            Question("VQ", prompts["prompt_quality"], (EDITED,), ("quality",))]


def read(question: Question, text: str) -> list[float] | None:
    found = [_score(text, KEYS[d]) for d in question.dimensions]
    return None if None in found else [float(s) for s in found]


def _score(text: str, key: str) -> int | None:
    block = re.search(r"\{[^{}]*" + key + r"[^{}]*\}", text)
    if block:
        try:
            value = json.loads(block.group(0)).get(key)
            if isinstance(value, int) and 1 <= value <= 5:
                return value
        except json.JSONDecodeError:
            pass
    for pattern in (key + r"\s*[:：]?\s*([1-5])", r"([1-5])\s*/\s*5", r"([1-5])\s+out\s+of\s+5"):
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


def sample_score(category: str, dimensions: dict[str, dict[str, Any]]) -> float:
    """This tool's figure for a sample (the benchmark combines none): the mean of its 1-5 dimensions."""
    return sum(d["score"] for d in dimensions.values()) / len(dimensions)

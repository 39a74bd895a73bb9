"""ImgEdit-Bench Basic (`Benchmark/Basic/basic_bench.py`, `step1_get_avgscore.py`): one question a sample, the
prompt of its edit type with `<edit_prompt>` replaced, then the original and the edit; the answer's lines
`Label: N` give three 1-5 scores (a line counts only if it splits on ': ' into two parts, the second all digits),
the sample's score their mean. The official step counts however many such lines there are; this reads exactly
three, in the order the prompt asks, and calls any other answer unparsed."""

from __future__ import annotations

from typing import Any

from score_stage.protocols import Question

DIMENSIONS = ("first", "second", "third")     # the prompts' own labels differ per edit type
ALIASES = {"alter": "adjust"}


def questions(entry: dict[str, Any], prompts: dict[str, str]) -> list[Question]:
    edit_type = ALIASES.get(entry["category"], entry["category"])
    if edit_type not in prompts:
        raise ValueError(f"sample '{entry['id']}': ImgEdit has no judge prompt for edit type '{edit_type}'")
    text = prompts[edit_type].replace("<edit_prompt>", entry["instruction"])
    return [Question("score", text, (("original", None), ("edited", None)), DIMENSIONS)]


def read(question: Question, text: str) -> list[float] | None:
    numbers = []
    for line in text.splitlines():
        parts = line.strip().split(": ")
        if len(parts) == 2 and parts[1].isdigit():
            numbers.append(int(parts[1]))
    return [float(n) for n in numbers] if len(numbers) == 3 and all(1 <= n <= 5 for n in numbers) else None


def sample_score(category: str, dimensions: dict[str, dict[str, Any]]) -> float:
    scores = [d["score"] for d in dimensions.values()]
    return round(sum(scores) / len(scores), 2)

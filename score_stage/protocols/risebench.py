"""RISEBench (`gpt_eval.py` eval_vanilla and extract): up to three questions a sample, each the prompt text then
its pictures. judge1, appearance consistency (skipped for a consistency-free sample); judge2, instruction reasoning;
judge3, visual plausibility (not for logical puzzles). Which prompt and which pictures depend on the category and
on the sample's reference (text or image) and `reasoning_img`; `{instruct}` and `{reference}` are formatted in.
The answer's score is the number after its first "Final Score"; on 1-5, or 0/1 for the logical judgements, mapped
to 1 and 5 as the scorer maps them (4 min(s, 1) + 1). The scorer shows pictures of at most 768 px
(`score.image_max_side: 768`)."""

from __future__ import annotations

import re
from typing import Any

from score_stage.leaderboards import risebench as table
from score_stage.protocols import Question

sample_score = table.sample_score       # the scorer's calculate_score, which the table uses too

_FINAL = re.compile(r"\*?\*?Final Scores?\*?\*?:?\s*([\d*\s,\n]*)", re.IGNORECASE)
INPUT, OUTPUT, REFERENCE = ("original", None), ("edited", None), ("reference", None)


def questions(entry: dict[str, Any], prompts: dict[str, str]) -> list[Question]:
    extra, category = entry.get("extra") or {}, entry["category"]
    fill = {"instruct": entry["instruction"], "reference": extra.get("reference", "")}
    if category == "logical_reasoning":
        first = REFERENCE if "reference_image" in extra else INPUT
        if "reference_image" in extra:
            cons, rea_images = prompts["prompt_logical_cons"], (first, OUTPUT)
            # as the scorer: the prompt without the question is sent as it is, not formatted
            rea = prompts["prompt_logical_img_wo_q"] if "reasoning_wo_ins" in extra else \
                prompts["prompt_logical_img"].format(**fill)
        else:
            cons, rea_images = prompts["prompt_logical_cons_ans"], (OUTPUT,)
            rea = prompts["prompt_logical_txt"].format(**fill)
        return [Question("judge1", cons.format(**fill), (first, OUTPUT), ("consistency",), binary=True),
                Question("judge2", rea, rea_images, ("reasoning",), binary=True)]
    with_input = extra.get("reasoning_img") is not None
    first = INPUT
    if category == "spatial_reasoning":
        if "reference_image" in extra:
            first, rea, rea_images = REFERENCE, prompts["prompt_spatial_ref_img"], (REFERENCE, OUTPUT)
        else:
            rea = prompts["prompt_spatial_ref_w_input" if with_input else "prompt_spatial_ref"]
            rea_images = (INPUT, OUTPUT) if with_input else (OUTPUT,)
        cons, qual = prompts["prompt_spatial_cons"], prompts["prompt_spatial_qual"]
    else:
        rea = prompts["prompt_reasoning_w_input" if with_input else "prompt_reasoning"]
        rea_images = (INPUT, OUTPUT) if with_input else (OUTPUT,)
        cons, qual = prompts["prompt_consist"], prompts["prompt_generation"]
    found = [] if extra.get("consistency_free") is not None else [
        Question("judge1", cons.format(**fill), (first, OUTPUT), ("consistency",))]
    return found + [Question("judge2", rea.format(**fill), rea_images, ("reasoning",)),
                    Question("judge3", qual, (OUTPUT,), ("plausibility",))]


def read(question: Question, text: str) -> list[float] | None:
    """The one number after the first "Final Score" (None if none, or several, as the scorer cannot use them)."""
    for match in _FINAL.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if numbers:
            return _on_scale(question, numbers)
    return None


def _on_scale(question: Question, numbers: list[int]) -> list[float] | None:
    if len(numbers) != 1:
        return None
    if question.binary:
        return [4.0 * min(numbers[0], 1) + 1]
    return [float(numbers[0])] if 1 <= numbers[0] <= 5 else None

"""The `official` protocol (`score.protocol: official`): a benchmark judged as its authors' scorer judges it, with
its own prompts (`judge_prompts.json`, imported from the user's copy), questions, picture order, answer format and
scale, and the per-sample combination of its dimensions; `score_stage.leaderboards` then makes its table.

Each benchmark's module gives `questions(entry, prompts)`, each `Question` naming the dimensions its answer holds,
`read(question, text)`, the dimensions' scores in that answer or None (never a guess: GEdit-Bench's scorer puts a
random integer where it cannot parse, this tool records the sample as `unparsed`), and `sample_score`. The judge
writes its answer (`generate` mode): the official formats put reasoning before the score or several scores in one
answer, which a probability over one next token cannot read.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from shards.judge_prompts import JudgePrompts


@dataclass(frozen=True)
class Question:
    """One question to the judge: a single user message, the text first, then the pictures in order (each after
    its label, where the benchmark labels them)."""

    name: str
    """The benchmark's name for it (e.g. SC, judge2)."""
    text: str
    """The prompt, its placeholders filled."""
    images: tuple[tuple[str, str | None], ...]
    """(kind, label) per picture: kind `original`, `edited` or `reference` (the sample's `reference_image`)."""
    dimensions: tuple[str, ...]
    """The dimensions its answer scores, in the order `read` returns them."""
    binary: bool = False
    """The answer is 0 or 1 (RISEBench's logical judgements), not a score on the benchmark's scale."""


class OfficialProtocol:
    """A benchmark's protocol, with the prompts imported for it."""

    def __init__(self, prompts: JudgePrompts):
        self.benchmark, self.prompts = prompts.benchmark, prompts.prompts
        self.module = importlib.import_module(f"score_stage.protocols.{prompts.benchmark}")

    def questions(self, entry: dict[str, Any]) -> list[Question]:
        return self.module.questions(entry, self.prompts)

    def result(self, entry: dict[str, Any], asked: list[tuple[Question, dict[str, Any]]], **run: Any) -> dict:
        """The sample's result (`SampleResult`) from each question and the judge's written answer to it."""
        dimensions, failed, unparsed, texts = {}, [], False, []
        for question, answer in asked:
            if answer.get("failed"):
                failed.append(f"{question.name}: {answer['failed']}")
                dimensions[question.name] = {"score": None, "failed": answer["failed"], "tokens": answer.get("tokens")}
                continue
            texts.append(f"[{question.name}] {answer['response']}")
            scores = self.module.read(question, answer["response"])
            unparsed |= scores is None
            for i, name in enumerate(question.dimensions):
                dimensions[name] = {"score": None if scores is None else float(scores[i])}
            first = dimensions[question.dimensions[0]]
            first.update(response=answer["response"], tokens=answer.get("tokens"))
        dimensions = {n: {k: v for k, v in d.items() if v is not None or k == "score"} for n, d in dimensions.items()}
        ok = not failed and not unparsed
        result = {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
                  "image_sha256": entry["sha256"], "status": "failed" if failed else "ok" if ok else "unparsed",
                  "score": self.module.sample_score(entry["category"], dimensions) if ok else None,
                  "dimensions": dimensions, "response": "\n".join(texts) or None, **run}
        if failed:
            result["reason"] = "; ".join(failed)
        spent = [a["tokens"] for _, a in asked if a.get("tokens")]
        if spent:
            result["tokens"] = {k: sum(t[k] for t in spent) for k in ("prompt", "completion")}
        return result

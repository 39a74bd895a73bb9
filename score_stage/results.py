"""One sample's result, assembled from its dimensions' answers, and the line a watching person reads for it.

A result is what the score stage's journal records and the report lists; `shards.report.schema.SampleResult`
defines each of its fields.
"""

from __future__ import annotations

from typing import Any

from score_stage.scoring import combine


def sample_result(entry: dict[str, Any], answers: dict[str, dict[str, Any]], rule: str, *, rank: int,
                  world_size: int, seconds: float) -> dict[str, Any]:
    """The result of a judged sample: `failed` with the reason if any dimension's answer could not hold a score
    (empty, refused, blocked), else `unparsed` (no score) if any dimension's answer has no score."""
    scores = [answer["score"] for answer in answers.values()]
    failed = {name: a["failed"] for name, a in answers.items() if a.get("failed")}
    parsed = all(score is not None for score in scores)
    responses = {name: a["response"] for name, a in answers.items() if a.get("response") is not None}
    result = {
        "id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
        "image_sha256": entry["sha256"],
        "score": combine(scores, rule) if parsed and not failed else None,
        "status": "failed" if failed else "ok" if parsed else "unparsed",
        "dimensions": answers,
        "response": "\n".join(responses.values() if len(answers) == 1 else
                              (f"[{name}] {text}" for name, text in responses.items())) if responses else None,
        "rank": rank, "world_size": world_size, "judge_seconds": round(seconds, 4),
    }
    if failed:
        result["reason"] = "; ".join(reason if len(answers) == 1 else f"{name}: {reason}"
                                     for name, reason in failed.items())
    spent = [a["tokens"] for a in answers.values() if a.get("tokens")]
    if spent:
        result["tokens"] = {k: sum(t[k] for t in spent) for k in ("prompt", "completion")}
    return result


def failed_result(entry: dict[str, Any]) -> dict[str, Any]:
    """The result of a sample the edit stage could not edit: no score, and the reason."""
    return {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"], "score": None,
            "status": "failed", "dimensions": {}, "response": None, "reason": entry["reason"]}


def describe(result: dict[str, Any]) -> str:
    """`物理/phys-01 score=6.83 | score=6.83 (P 7:0.42 6:0.31)`: the combined score, then each dimension's score
    with its two likeliest values (`expected` mode) or the start of the judge's answer (`generate` mode)."""
    parts = []
    for name, answer in result["dimensions"].items():
        if answer.get("failed"):
            parts.append(f"{name} failed: {answer['failed'][:60]}")
        elif "distribution" in answer:
            top = sorted(enumerate(answer["distribution"]), key=lambda sp: -sp[1])[:2]
            parts.append(f"{name}={answer['score']:.2f} (P " + " ".join(f"{s}:{p:.2f}" for s, p in top) + ")")
        else:
            parts.append(f"{name}={_number(answer['score'])} " + " ".join((answer.get("response") or "").split())[:60])
    return f"{result['category']}/{result['id']} score={_number(result['score'])} | " + " ".join(parts)


def _number(score: float | None) -> str:
    return "unparsed" if score is None else f"{score:.2f}".rstrip("0").rstrip(".")

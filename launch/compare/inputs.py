"""What `launch compare` reads from a run folder, checked before anything is computed from it.

A report.json may have been edited by hand or written by an older version: every field the comparison reads is
checked for its type here, and an error names the file and the field (`runs/a/report.json: samples[3].score:
expected a number for a scored sample, got 'high'`), never a traceback from deep inside the statistics.
Standard library only.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

STATUSES = ("ok", "unparsed", "failed")
MIN_SCORE, MAX_SCORE = 0, 10      # the judge's scale (score_stage.parsing); off it, differences can overflow to inf
_MISSING = object()


class CompareError(ValueError):
    """A run folder that cannot be compared; the message names it."""


def load_run(folder: str) -> dict[str, Any]:
    """A run's report (and its thumbnails when present), named by its folder, every field compare uses checked.

    Raises:
        CompareError: naming the file, and the field for a value of the wrong type.
    """
    path = os.path.join(folder, "report.json")
    if not os.path.isfile(path):
        raise CompareError(f"{folder}: no report.json (run the score stage on it first)")
    report = _read_json(path)
    check_report(path, report)
    thumbs_path = os.path.join(folder, "thumbnails.json")
    thumbnails = _read_json(thumbs_path) if os.path.isfile(thumbs_path) else {}
    check_thumbnails(thumbs_path, thumbnails)
    return {"folder": os.path.abspath(folder), "report": report, "thumbnails": thumbnails}


def distinct_folders(folders: list[str]) -> None:
    """Refuse a run given twice (by another spelling or through a symlink): it would be paired with itself."""
    seen: dict[str, str] = {}
    for folder in folders:
        real = os.path.realpath(folder)
        if real in seen:
            raise CompareError(f"{seen[real]} and {folder} are the same run folder ({real}): give each run once")
        seen[real] = folder


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise CompareError(f"{path}: not valid JSON: nested too deep for the parser") from None


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing (the key is missing)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int)
                                                                                 or math.isfinite(value))


def _score(value: Any) -> bool:
    """A number on the judge's scale: scores and their means (an int of 400 digits is compared, never converted)."""
    return _number(value) and MIN_SCORE <= value <= MAX_SCORE


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _interval(value: Any) -> bool:
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_score, value)))


KINDS: dict[str, Callable[[Any], bool]] = {
    "an object": lambda v: isinstance(v, dict), "a list": lambda v: isinstance(v, list),
    "text": lambda v: isinstance(v, str), "text or null": lambda v: v is None or isinstance(v, str),
    "a number from 0 to 10, or null": lambda v: v is None or _score(v), "a count (0 or more)": _count,
    "null or [low, high] from 0 to 10": _interval,
}


def _field(path: str, node: dict, at: str, key: str, kind: str, required: bool = True) -> Any:
    """`node[key]`, checked to be of `kind` (a key of KINDS); an absent optional key gives None."""
    value = node.get(key, _MISSING)
    if value is _MISSING and not required:
        return None
    if value is _MISSING or not KINDS[kind](value):
        raise CompareError(f"{path}: {at + '.' if at else ''}{key}: expected {kind}, got {_shown(value)}")
    return value


def check_report(path: str, report: Any) -> None:
    """The fields `launch compare` reads from a report.json, with their types.

    Raises:
        CompareError: `<path>: <field>: expected ..., got ...` for the first field that is missing or mistyped.
    """
    if not isinstance(report, dict):
        raise CompareError(f"{path}: expected a JSON object, got {_shown(report)}")
    for key in ("edit_model", "judge_model", "scoring_mode"):
        _field(path, report, "", key, "text")
    # Reports before the run record have none: compare names their data as not recorded (launch.compare.cli).
    record = _field(path, report, "", "record", "an object", required=False) or {}
    for key in ("judge", "judging", "dataset"):
        _field(path, record, "record", key, "an object", required=False)
    if "dataset" in record:
        _field(path, record["dataset"], "record.dataset", "sha256", "text")
    _check_summary(path, "overall", _field(path, report, "", "overall", "an object"),
                   ("mean_over_samples", "mean_over_categories"), ("count", "scored", "unparsed", "failed"))
    for name in _field(path, report, "", "categories", "an object"):
        _check_summary(path, f"categories.{name}", _field(path, report["categories"], "categories", name,
                                                          "an object"), ("mean",), ("count", "scored"))
    first: dict[str, int] = {}
    for i, sample in enumerate(_field(path, report, "", "samples", "a list")):
        _check_sample(path, f"samples[{i}]", sample)
        if sample["category"] not in report["categories"]:      # the pairs' figures are summed per category
            raise CompareError(f"{path}: samples[{i}].category: {_shown(sample['category'])} is not one of the "
                               f"report's categories ({', '.join(report['categories'])})")
        if sample["id"] in first:
            raise CompareError(f"{path}: samples[{i}].id: {_shown(sample['id'])} appears twice "
                               f"(first at samples[{first[sample['id']]}])")
        first[sample["id"]] = i


def _check_summary(path: str, at: str, node: dict, means: tuple[str, ...], counts: tuple[str, ...]) -> None:
    for key in means:
        _field(path, node, at, key, "a number from 0 to 10, or null")
        _field(path, node, at, f"{key}_ci95", "null or [low, high] from 0 to 10", required=False)
    for key in counts:
        _field(path, node, at, key, "a count (0 or more)")


def _check_sample(path: str, at: str, sample: Any) -> None:
    if not isinstance(sample, dict):
        raise CompareError(f"{path}: {at}: expected an object, got {_shown(sample)}")
    for key in ("id", "category"):
        _field(path, sample, at, key, "text")
    for key in ("instruction", "original_sha256"):
        _field(path, sample, at, key, "text or null", required=False)
    status = sample.get("status", _MISSING)
    if status not in STATUSES:
        raise CompareError(f"{path}: {at}.status: expected one of {', '.join(STATUSES)}, got {_shown(status)}")
    score = sample.get("score", _MISSING)
    if status == "ok" and not _score(score):
        raise CompareError(f"{path}: {at}.score: expected a number from 0 to 10 for a scored sample, got "
                           f"{_shown(score)}")
    if status != "ok" and score is not None:
        raise CompareError(f"{path}: {at}.score: expected null for a sample with status '{status}', "
                           f"got {_shown(score)}")


def check_thumbnails(path: str, thumbnails: Any) -> None:
    """thumbnails.json: sample id -> {"original", "edited"}, each an image data URI or null."""
    if not isinstance(thumbnails, dict):
        raise CompareError(f"{path}: expected a JSON object, got {_shown(thumbnails)}")
    for sample_id, pair in thumbnails.items():
        if not isinstance(pair, dict):
            raise CompareError(f"{path}: {sample_id}: expected an object, got {_shown(pair)}")
        for key in ("original", "edited"):
            _field(path, pair, sample_id, key, "text or null", required=False)

"""What `launch compare` reads from a run folder, checked before anything is computed from it.

A report.json may have been edited by hand or written by another version: it is read through its typed
definition (`shards.report.schema.Report`), so an error names the file and the field (`runs/a/report.json:
samples[3].score: expected a number from 0 to 10 for a scored sample, got 'high'`), never a traceback from deep
inside the statistics, and a report of another schema_version is refused saying how to rewrite it. The comparison
then works on the report's JSON data, as checked. Standard library only.
"""

from __future__ import annotations

import os
from typing import Any

from shards.report.schema import MAX_SCORE, MIN_SCORE, read_report  # noqa: F401 (the scale, re-exported)
from shards.typed_data import JSON_FILE, SchemaError, load_json


class CompareError(ValueError):
    """A run folder that cannot be compared; the message names it."""


def load_run(folder: str) -> dict[str, Any]:
    """A run's report (and its thumbnails when present), named by its folder, checked against their definitions.

    Raises:
        CompareError: naming the file, and the field for a value that does not match.
    """
    path = os.path.join(folder, "report.json")
    if not os.path.isfile(path):
        raise CompareError(f"{folder}: no report.json (run the score stage on it first)")
    thumbs_path = os.path.join(folder, "thumbnails.json")
    try:
        report = read_report(path)
        thumbnails = load_json(thumbs_path) if os.path.isfile(thumbs_path) else {}
    except SchemaError as e:
        raise CompareError(str(e)) from None
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


def check_thumbnails(path: str, thumbnails: Any) -> None:
    """thumbnails.json: sample id -> {"original", "edited"}, each an image data URI or null (the page's images,
    not a record: it has no schema_version)."""
    if not isinstance(thumbnails, dict):
        raise CompareError(f"{path}: expected a JSON object, got {JSON_FILE.show(thumbnails)}")
    for sample_id, pair in thumbnails.items():
        if not isinstance(pair, dict):
            raise CompareError(f"{path}: {sample_id}: expected an object, got {JSON_FILE.show(pair)}")
        for key in ("original", "edited"):
            if not (pair.get(key) is None or isinstance(pair[key], str)):
                raise CompareError(f"{path}: {sample_id}.{key}: expected text or null, got "
                                   f"{JSON_FILE.show(pair[key])}")

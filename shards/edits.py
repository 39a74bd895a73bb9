"""Edits brought from elsewhere (any model, an API, a fine-tune run outside this tool): where they are, and what
identifies them.

A source is a folder with one image per sample named `<id>.png`, `.jpg`, `.jpeg` or `.webp`, or a JSONL file of
`{"id": ..., "edited": path}` lines (paths relative to the JSONL's folder). Missing, extra and duplicate images
are all named at once, before anything is written. Standard library only: the launcher checks a source before
it builds any environment; `edit_stage.imports` decodes the images and writes the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

from shards.dataset import DatasetError, list_problems
from shards.store import sha256_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def find_edits(source: str, wanted: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """Sample id -> the edited image's path, for every image in the source (of any sample of the dataset, so
    that what identifies the source does not depend on which samples a run selects).

    Args:
        source: The folder or JSONL file.
        wanted: The ids this run works on (the dataset's selected samples): each must have an image.
        known: Every id of the dataset: an image of another id is an error (a typo, or another benchmark's).

    Raises:
        DatasetError: listing every missing, extra, duplicate or unlisted image, and every bad JSONL line.
    """
    found, problems = _read_jsonl(source) if os.path.isfile(source) else _read_folder(source)
    known_ids = set(known)
    problems += [f"{source}: an edited image for '{i}', which is not a sample of the dataset ({found[i]})"
                 for i in found if i not in known_ids]
    problems += [f"{source}: no edited image for sample '{i}'" for i in wanted if i not in found]
    if problems:
        raise DatasetError(list_problems(problems) + "\n(bring one image per sample, named by its id, or list "
                                                     "them in a JSONL file of {\"id\": ..., \"edited\": path} lines)")
    return found


def _read_folder(folder: str) -> tuple[dict[str, str], list[str]]:
    if not os.path.isdir(folder):
        return {}, [f"{folder}: no such folder or JSONL file of edited images"]
    found, problems = {}, []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
            continue
        if stem in found:
            problems.append(f"{folder}: two images for sample '{stem}': {os.path.basename(found[stem])} and {name}")
            continue
        found[stem] = os.path.join(folder, name)
    return found, problems


def _read_jsonl(path: str) -> tuple[dict[str, str], list[str]]:
    root, found, problems = os.path.dirname(os.path.abspath(path)), {}, []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{lineno}: not valid JSON: {e}")
                continue
            if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                    and isinstance(record.get("edited"), str)):
                problems.append(f"{path}:{lineno}: expected {{\"id\": ..., \"edited\": path}}")
                continue
            if record["id"] in found:
                problems.append(f"{path}:{lineno}: sample '{record['id']}' is listed twice")
                continue
            edited = os.path.join(root, os.path.expanduser(record["edited"]))
            if not os.path.isfile(edited):
                problems.append(f"{path}:{lineno}: sample '{record['id']}': edited image not found: {edited}")
                continue
            found[record["id"]] = edited
    return found, problems


def edits_identity(source: str, edits: dict[str, str], dataset_sha256: str) -> dict[str, object]:
    """What makes an import the same import: the source, every brought image's content, and the dataset."""
    digest = hashlib.sha256()
    for sample_id in sorted(edits):
        digest.update(f"{sample_id}\0{sha256_file(edits[sample_id])}\n".encode())
    return {"edit.source": "imported", "edits": os.path.abspath(source), "edited files sha256": digest.hexdigest(),
            "dataset file sha256": dataset_sha256}

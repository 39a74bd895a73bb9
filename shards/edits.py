"""Edits brought from elsewhere (any model, an API, a fine-tune run outside this tool): where they are, and what
identifies them.

A source is a folder with one image per sample named `<id>.png`, `.jpg`, `.jpeg` or `.webp`, the id's folders as
folders (`FOLDER/color_alter/en/a1.png` for GEdit-Bench's `color_alter/en/a1`), or a JSONL file of
`{"id": ..., "edited": path}` lines (paths relative to the JSONL's folder). As for a dataset's images, an image
must stay inside the source's folder once links are resolved: an absolute or `../` path, or a link (to a file or
a folder) that leads elsewhere, is refused. Missing, extra and duplicate images are all named at once, before
anything is written. Standard library only: the launcher checks a source before it builds any environment;
`edit_stage.imports` decodes the images and writes the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

from shards.dataset import DatasetError, leaves_folder, list_problems
from shards.store import open_regular, sha256_file

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
    for here, folders, files in os.walk(folder):
        folders[:] = [d for d in sorted(folders) if _enter(folder, os.path.join(here, d), problems)]
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                continue
            path = os.path.join(here, name)
            sample_id = os.path.relpath(os.path.join(here, stem), folder).replace(os.sep, "/")
            if leaves_folder(folder, path):
                problems.append(f"{path}: the image is a link to a file outside {folder} ({os.path.realpath(path)})")
            elif unreadable(path):
                problems.append(f"{path}: {unreadable(path)}")
            elif sample_id in found:
                problems.append(f"{folder}: two images for sample '{sample_id}': "
                                f"{os.path.relpath(found[sample_id], folder)} and {os.path.relpath(path, folder)}")
            else:
                found[sample_id] = path
    return found, problems


def _enter(folder: str, path: str, problems: list[str]) -> bool:
    """Whether to look into the folder `path` under the source `folder`: not a hidden one, and not a link. A link
    that leaves the source is a problem; one that stays inside is not followed: its images are found where it
    leads, and a link back up would loop."""
    if os.path.islink(path) and leaves_folder(folder, path):
        problems.append(f"{path}: the folder is a link to a folder outside {folder} ({os.path.realpath(path)})")
    return not os.path.basename(path).startswith(".") and not os.path.islink(path)


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
            edited = os.path.join(root, record["edited"])
            if os.path.isabs(os.path.expanduser(record["edited"])) or leaves_folder(root, record["edited"]):
                problems.append(f"{path}:{lineno}: sample '{record['id']}': edited image path '{record['edited']}' "
                                f"leaves the folder {root} (list images inside the JSONL's folder; a link there "
                                "must not lead elsewhere)")
                continue
            if not os.path.lexists(edited) or unreadable(edited):
                problems.append(f"{path}:{lineno}: sample '{record['id']}': " + (
                    f"{edited}: {unreadable(edited)}" if os.path.lexists(edited) else f"edited image not found: {edited}"))
                continue
            found[record["id"]] = edited
    return found, problems


def unreadable(path: str) -> str | None:
    """Why the image file `path` cannot be read (a FIFO, a folder, a link to nothing, no permission), or None: the
    launcher reads every brought image for the source's digest, and would otherwise wait or fail there."""
    try:
        with open_regular(path):
            return None
    except OSError as e:
        return e.strerror or str(e)


def edits_identity(source: str, edits: dict[str, str], dataset_sha256: str) -> dict[str, object]:
    """What makes an import the same import: the source, every brought image's content, and the dataset."""
    digest = hashlib.sha256()
    for sample_id in sorted(edits):
        digest.update(f"{sample_id}\0{sha256_file(edits[sample_id])}\n".encode())
    return {"edit.source": "imported", "edits": os.path.abspath(source), "edited files sha256": digest.hexdigest(),
            "dataset file sha256": dataset_sha256}

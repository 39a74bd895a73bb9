"""Edits brought from elsewhere (any model, an API, a fine-tune run outside this tool): where they are, and what
identifies them.

A source is a folder with one image per sample named `<id>.png`, `.jpg`, `.jpeg` or `.webp`, the id's folders as
folders (`FOLDER/color_alter/en/a1.png` for GEdit-Bench's `color_alter/en/a1`), or a JSONL file of
`{"id": ..., "edited": path}` lines (paths relative to the JSONL's folder). As for a dataset's images, an image
must stay inside the source's folder once links are resolved: an absolute or `../` path, or a link (to a file or
a folder) that leads elsewhere, is refused. A file named in another Unicode normalization than its id (macOS
writes names decomposed) is that id's image. An id no file name can hold (an empty, '.', '..' or hidden part, a
part over 250 bytes) needs a JSONL. Missing, extra and duplicate images are all named at once, before
anything is written. Standard library only: the launcher checks a source before it builds any environment;
`edit_stage.brought_edits` decodes the images and writes the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from typing import Iterator, Sequence

from shards.dataset import DatasetError, _printable, leaves_folder, list_problems
from shards.files import open_regular, sha256_file

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
    found = _under_dataset_ids(source, found, known, problems)
    known_ids = set(known)
    problems += [f"{source}: an edited image for '{_printable(i)}', which is not a sample of the dataset "
                 f"({found[i]})" for i in found if i not in known_ids]
    problems += [f"{source}: no edited image for sample '{_printable(i)}'" + (
        "" if os.path.isfile(source) or folder_can_hold(i) else " (no file name in a folder can hold this id: list "
                                                                "its image in a JSONL file instead)")
        for i in wanted if i not in found]
    if problems:
        raise DatasetError(list_problems(problems) + "\n(bring one image per sample, named by its id, or list "
                                                     "them in a JSONL file of {\"id\": ..., \"edited\": path} lines)")
    return found


def folder_can_hold(sample_id: str) -> bool:
    """Whether `<id>.png` in a folder can be this id's image: each of its '/'-parts a visible file name (not empty,
    '.', '..' or hidden, which the folder's walk skips) short enough for the file system (255 bytes)."""
    return all(part not in ("", ".", "..") and not part.startswith(".") and len(part.encode("utf-8", "replace")) <= 250
               for part in sample_id.split("/"))


def _under_dataset_ids(source: str, found: dict[str, str], known: Sequence[str], problems: list[str]) -> dict[str, str]:
    """`found` with an id the dataset holds only in another Unicode normalization under the dataset's id: macOS
    names files decomposed (NFD), while a dataset's JSON holds what was typed (mostly NFC), and both show alike."""
    known_ids, forms = set(known), {}
    for sample_id in known:
        forms.setdefault(unicodedata.normalize("NFC", sample_id), []).append(sample_id)
    result: dict[str, str] = {}
    for sample_id, path in sorted(found.items(), key=lambda item: item[0] not in known_ids):   # exact names first
        same = forms.get(unicodedata.normalize("NFC", sample_id), [])
        key = same[0] if sample_id not in known_ids and len(same) == 1 else sample_id
        if key in result:
            problems.append(f"{source}: two images for sample '{_printable(key)}' (their names differ only in "
                            f"Unicode normalization): {result[key]} and {path}")
        else:
            result[key] = path
    return result


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
    for lineno, sample_id, image in _jsonl_lines(path, problems):
        where = f"{path}:{lineno}: sample '{_printable(sample_id)}'"
        edited = os.path.join(root, image)
        if sample_id in found:
            problems.append(f"{where} is listed twice")
        elif "\0" in image:
            problems.append(f"{where}: edited image path '{_printable(image)}' holds a NUL character")
        elif os.path.isabs(os.path.expanduser(image)) or leaves_folder(root, image):
            problems.append(f"{where}: edited image path '{_printable(image)}' leaves the folder {root} (list images "
                            "inside the JSONL's folder; a link there must not lead elsewhere)")
        elif not os.path.lexists(edited):
            problems.append(f"{where}: edited image not found: {edited}")
        elif unreadable(edited):
            problems.append(f"{where}: {edited}: {unreadable(edited)}")
        else:
            found[sample_id] = edited
    return found, problems


def _jsonl_lines(path: str, problems: list[str]) -> Iterator[tuple[int, str, str]]:
    """(line number, id, edited path) of each well-formed line; a problem noted for each other one."""
    try:
        with open_regular(path) as f:
            lines = f.read().split(b"\n")
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror or e}")
        return
    for lineno, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
            record = json.loads(line) if line.strip() else None
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})")
            continue
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{lineno}: not valid JSON: {e}")
            continue
        except RecursionError:
            problems.append(f"{path}:{lineno}: nested too deep for Python's JSON reader")
            continue
        if record is None:
            continue
        if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                and isinstance(record.get("edited"), str)):
            problems.append(f"{path}:{lineno}: expected {{\"id\": ..., \"edited\": path}}")
            continue
        yield lineno, record["id"], record["edited"]


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

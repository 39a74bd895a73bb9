"""ImgEdit-Bench Basic (PKU-YuanGroup/ImgEdit) as it ships: `Benchmark/Basic/basic_edit.json`, a mapping of key
to `{id: the original's path, prompt, edit_type}`, and the originals (the `singleturn` images of the benchmark's
download) under one folder, at the `id` paths.

SOURCE is the folder holding both (the JSON anywhere below it, the images at their `id` paths relative to the
folder that holds the `id`s' first components), or give the images' folder with `--images`. The key is the id, the
edit type the category (nine: add, remove, replace, adjust, action, style, background, extract, compose; data of
before June 2025 names adjust edits `alter`, which is kept as it is). The judge prompts of the official protocol
are `Benchmark/Basic/prompts.json`, one per edit type.
"""

from __future__ import annotations

import os

from launch.importers.common import BenchmarkError, Reading, Row, not_found, read_json, text
from launch.importers.prompts import PromptFile

CATEGORIES = ("add", "remove", "replace", "adjust", "alter", "action", "style", "background", "extract", "compose")
INDEX_PLACES = ("basic_edit.json", "Basic/basic_edit.json", "Benchmark/Basic/basic_edit.json")
PROMPTS = [PromptFile(tuple(p.replace("basic_edit", "prompts") for p in INDEX_PLACES),
                      ("replace", "add", "adjust", "remove", "style", "action", "extract", "background", "compose"))]


def read(source: str, images: str | None = None) -> Reading:
    index = next((os.path.join(source, p) for p in INDEX_PLACES if os.path.isfile(os.path.join(source, p))), None)
    if index is None:
        raise not_found(source, "imgedit", list(INDEX_PLACES))
    records = read_json(index, "ImgEdit-Bench Basic index")
    if not isinstance(records, dict):
        raise BenchmarkError(f"{index}: expected a mapping of key to sample, got {type(records).__name__}")
    paths = [r.get("id") for r in records.values() if isinstance(r, dict) and isinstance(r.get("id"), str)]
    root = images or image_root(source, paths)
    rows, problems = [], []
    for key, record in records.items():
        where = f"{index}: sample '{key}'"
        if not isinstance(record, dict):
            problems.append(f"{where}: expected an object")
            continue
        path = text(record, "id", where, problems)
        instruction = text(record, "prompt", where, problems)
        category = text(record, "edit_type", where, problems)
        if category and category not in CATEGORIES:
            problems.append(f"{where}: edit_type '{category}' is not one of ImgEdit's ({', '.join(CATEGORIES)})")
        if None in (path, instruction, category):
            continue
        rows.append(Row(id=key, category=category, instruction=instruction, image=path,
                        source=os.path.join(root, path), extra={"benchmark": "imgedit", "edit_type": category}))
    return Reading(rows, problems)


def image_root(source: str, paths: list[str]) -> str:
    """The folder under SOURCE where the `id` paths resolve (the download's `singleturn/`, wherever it was put):
    the one holding the most of them among SOURCE and the folders below it."""
    best, found = source, -1
    for folder, below, _ in os.walk(source):
        if folder[len(source):].count(os.sep) >= 3:
            below.clear()
        hits = sum(os.path.isfile(os.path.join(folder, p)) for p in paths[:50])
        if hits > found:
            best, found = folder, hits
    return best

"""What every importer shares: a sample read from a benchmark's own files, the checks that run before anything is
written, and the writing of `benchmark.jsonl` with its images beside it.

Standard library only at import (the launcher's bare Python reads a source and checks its paths); decoding the
images (`image_problems`, Pillow) and reading parquet (`gedit`, pyarrow) need the judge's environment, where the
launcher runs the import when its own Python lacks them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

DATASET_NAME = "benchmark.jsonl"
IMAGES = "images"


class BenchmarkError(ValueError):
    """A source that is not the benchmark it was said to be, or is incomplete; the message names each problem."""


@dataclass
class Row:
    """One sample as the benchmark ships it: its image is a file of the source (copied as it is) or embedded bytes
    (written as they are, under `image` with the extension of their format)."""

    id: str
    category: str
    instruction: str
    image: str                           # where the image goes, relative to the output's images folder
    source: str | None = None            # the source's image file, copied as it is
    data: bytes | None = None            # or the image's bytes, embedded in the source
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)   # other files to copy: destination -> source file


@dataclass
class Reading:
    """What an importer read: the samples, the problems that stop the import (each naming the sample and field),
    and notes to show (samples the tool cannot take, left out and named)."""

    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"{path}: cannot read the {what}: {e}") from None
    except RecursionError:                  # the parser recurses once per level of nesting
        raise BenchmarkError(f"{path}: cannot read the {what}: nested too deep for Python's JSON reader") from None


def text(record: dict, key: str, where: str, problems: list[str], *alternatives: str) -> str | None:
    """The record's non-empty string under `key` (or the first of `alternatives` it has), else a problem noted."""
    for name in (key, *alternatives):
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    names = " or ".join(f"'{n}'" for n in (key, *alternatives))
    problems.append(f"{where}: missing or empty field {names}")
    return None


def other_benchmark(source: str) -> str | None:
    """The benchmark whose files `source` holds, by their telltale names, if any."""
    telltales = [("risebench", ("data/data_total.json", "data_total.json")),
                 ("imgedit", ("Benchmark/Basic/basic_edit.json", "Basic/basic_edit.json", "basic_edit.json")),
                 ("kris", ("KRIS_Bench",))]
    for name, paths in telltales:
        if any(os.path.exists(os.path.join(source, p)) for p in paths):
            return name
    if os.path.isdir(source) and any(os.path.isfile(os.path.join(source, d, "annotation.json"))
                                     for d in os.listdir(source)):
        return "kris"
    if os.path.isdir(source) and any(f.endswith(".parquet") for _, _, files in os.walk(source) for f in files):
        return "gedit"
    return None


def not_found(source: str, name: str, looked_for: list[str]) -> BenchmarkError:
    """The source lacks the benchmark's index file: say where we looked, and which benchmark it looks like."""
    other = other_benchmark(source)
    hint = (f"; it looks like a copy of another benchmark: try `import-benchmark {other}`" if other and other != name
            else "")
    return BenchmarkError(f"{source}: not a copy of {name} as it ships (looked for "
                          f"{', '.join(looked_for)}){hint}")


def check_rows(rows: list[Row], allow_missing_images: bool) -> list[str]:
    """Problems with the rows as a whole: a line the dataset loader would refuse (an id with a control character
    or over 200 characters, text that is not valid Unicode), duplicate ids, a path that would leave the output
    folder, missing image files (unless allowed)."""
    from shards.dataset import DatasetError, parse_line

    problems, seen = [], {}
    for lineno, row in enumerate(rows, start=1):
        try:
            parse_line(json.dumps(dataset_record(row), ensure_ascii=False), lineno)
        except DatasetError as e:
            problems.append(f"{DATASET_NAME}:{e}")
        for path in (row.image, *(os.path.relpath(d, IMAGES) for d in row.copies)):
            if os.path.isabs(path) or os.path.normpath(path).split(os.sep)[0] == "..":
                problems.append(f"{row.id}: the path '{path}' leaves the benchmark's folder")
        if row.id in seen:
            problems.append(f"{row.id}: duplicate id (from {seen[row.id]} and {row.source or row.image})")
        seen.setdefault(row.id, row.source or row.image)
        if row.source is not None and not os.path.isfile(row.source) and not allow_missing_images:
            problems.append(f"{row.id}: image {row.source} does not exist")
        for copy in row.copies.values():
            if not os.path.isfile(copy):
                problems.append(f"{row.id}: file {copy} does not exist")
    return problems


def source_root(folder: str) -> str:
    """The real folder that the files of the source `folder` may lead into: the folder itself or, for a snapshot of
    the Hugging Face hub's cache (whose files are links to `../../blobs/<hash>`), the repository's cache folder,
    which holds its snapshots and their blobs."""
    real = os.path.realpath(folder)
    parts = real.split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and os.path.isdir(os.sep.join(parts[:i] + ["blobs"])):
            return os.sep.join(parts[:i])
    return real


def outside_problems(rows: list[Row], roots: list[str]) -> list[str]:
    """Every file to copy that leads outside the source's `roots` once links are resolved (a link to a file
    elsewhere, a file under a linked folder elsewhere): the import would copy a file that is not the benchmark's,
    a system file say."""
    problems = []
    for row in rows:
        for path in _files(row):
            real = os.path.realpath(path)
            if not any(os.path.commonpath([real, root]) == root for root in roots):
                problems.append(f"{row.id}: {path} leads outside the source {' or '.join(roots)} ({real}); copy "
                                "the file into the source instead of linking to it")
    return problems


def image_problems(rows: list[Row]) -> list[str]:
    """Every image the import would write that the dataset loader would refuse: decoded as it will decode it
    (`shards.images.check_image`), so that an import that succeeds is a dataset the stages take."""
    from shards.files import open_regular
    from shards.images import ImageError, check_image

    problems = []
    for row in rows:
        images = [(f"image {path}", path) for path in _files(row)]
        images += [("the embedded image", None)] if row.data is not None else []
        for what, path in images:
            try:
                if path is None:
                    check_image(row.data)
                else:
                    with open_regular(path) as f:
                        check_image(f.read())
            except ImageError as e:
                problems.append(f"{row.id}: cannot use {what}: {e}")
            except (OSError, SyntaxError, ValueError) as e:
                problems.append(f"{row.id}: cannot decode {what}: {e}")
    return problems


def _files(row: Row) -> list[str]:
    """The source's files the row copies, those that exist (a missing one is `check_rows`' problem)."""
    return [path for path in (row.source, *row.copies.values()) if path is not None and os.path.isfile(path)]


def refuse(problems: list[str], source: str, shown: int = 20) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
        raise BenchmarkError(f"{source}: {len(problems)} problem(s); nothing was written:\n  "
                             + "\n  ".join(problems[:shown]) + more)


def dataset_record(row: Row) -> dict[str, Any]:
    """The row's line of `benchmark.jsonl`."""
    record = {"id": row.id, "category": row.category, "image": f"{IMAGES}/{row.image}",
              "instruction": row.instruction}
    if row.description:
        record["description"] = row.description
    return {**record, **row.extra}


def write_dataset(rows: list[Row], output: str) -> str:
    """`output/benchmark.jsonl` and the images under `output/images/`; the JSONL last, so that a folder without
    it holds no dataset. Returns the JSONL's path."""
    dataset = os.path.join(output, DATASET_NAME)
    if os.path.exists(dataset):
        raise BenchmarkError(f"{dataset} exists: choose another --output, or remove it to import again")
    lines = []
    for row in rows:
        target = os.path.join(output, IMAGES, row.image)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if row.data is not None:
            with open(target, "wb") as f:
                f.write(row.data)
        elif os.path.isfile(row.source):
            shutil.copyfile(row.source, target)
        for destination, path in row.copies.items():
            os.makedirs(os.path.dirname(os.path.join(output, destination)), exist_ok=True)
            shutil.copyfile(path, os.path.join(output, destination))
        lines.append(json.dumps(dataset_record(row), ensure_ascii=False))
    temporary = dataset + ".partial"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(temporary, dataset)
    return dataset

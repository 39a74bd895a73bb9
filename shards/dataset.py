"""The benchmark dataset (JSONL), the samples a run selects, how they are split across ranks, and their seeds.

Standard library only: the launcher validates the dataset with it before any environment exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

REQUIRED_FIELDS = ("id", "category", "image", "instruction")


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file, the line and the sample."""


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One benchmark item."""

    id: str
    """Unique id; the key of the sample everywhere downstream."""
    category: str
    """Category name (any script); selects the judge prompts."""
    image: str
    """Path of the original image, relative to the dataset's folder."""
    instruction: str
    """The edit instruction."""
    description: str | None = None
    """Optional description of the original image."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other keys of the JSONL line, passed along untouched."""


def load_dataset(path: str, categories: Sequence[str] | None = None) -> list[Sample]:
    """Read and validate a JSONL dataset.

    Args:
        path: The JSONL file.
        categories: The categories that have judge prompts; a sample of any other category is an error.

    Raises:
        DatasetError: naming the line, the sample id and the problem.
    """
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read dataset: {e}") from None
    samples, seen = [], {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        sample = _parse_line(line, f"{path}:{lineno}")
        where = f"{path}:{lineno}: sample '{sample.id}'"
        if sample.id in seen:
            raise DatasetError(f"{where}: duplicate id (first seen on line {seen[sample.id]})")
        seen[sample.id] = lineno
        if categories is not None and sample.category not in categories:
            raise DatasetError(f"{where}: category '{sample.category}' has no judge prompts in the config "
                               f"(configured: {', '.join(categories)})")
        _check_image(root, sample.image, where)
        samples.append(sample)
    if not samples:
        raise DatasetError(f"{path}: the dataset has no samples")
    return samples


def _parse_line(line: str, where: str) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    sample_id = record.get("id")
    label = f"{where}: sample '{sample_id}'" if isinstance(sample_id, str) else where
    for key in REQUIRED_FIELDS:
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{label}: missing or empty required field '{key}' (a non-empty string)")
    description = record.get("description")
    if description is not None and not isinstance(description, str):
        raise DatasetError(f"{label}: field 'description' must be a string")
    extra = {k: v for k, v in record.items() if k not in (*REQUIRED_FIELDS, "description")}
    return Sample(id=record["id"], category=record["category"], image=record["image"],
                  instruction=record["instruction"], description=description, extra=extra)


def _check_image(root: str, image: str, where: str) -> None:
    full = os.path.realpath(os.path.join(root, image))
    if os.path.isabs(image) or os.path.commonpath([full, os.path.realpath(root)]) != os.path.realpath(root):
        raise DatasetError(f"{where}: image path '{image}' leaves the dataset folder {root}")
    if not os.path.isfile(full):
        raise DatasetError(f"{where}: image file not found: {full}")


def select_samples(samples: Sequence[Any], categories: Sequence[str] | None, limit: int | None,
                   category_of: Callable[[Any], str] = lambda s: s.category) -> list[Any]:
    """The samples a run works on: those of `categories` (all if None), then the first `limit`.

    Works on `Sample`s and, with `category_of`, on manifest entries, so both stages select alike.
    """
    chosen = [s for s in samples if categories is None or category_of(s) in categories]
    return chosen if limit is None else chosen[:limit]


def split_for_rank(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's share: every world_size-th item from position `rank`.

    Strided rather than blocked so that a dataset sorted by category spreads each category over all ranks,
    and the shares differ in length by at most one.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of size {world_size}")
    return list(items[rank::world_size])


def derive_seed(base_seed: int, sample_id: str) -> int:
    """A 63-bit seed from the base seed and the sample id: the same on any rank and any world size."""
    digest = hashlib.sha256(f"{base_seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)

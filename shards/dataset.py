"""The benchmark dataset (JSONL), the samples a run selects, and their seeds.

Standard library only, so the launcher validates the dataset with it before any environment exists; only
`check_images`, which the stages call, decodes images (with Pillow, through `shards.images`).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from shards.files import open_regular
from shards.images import ImageError, check_image, open_image  # noqa: F401 - open_image: every stage reads here

REQUIRED_FIELDS = ("id", "category", "image", "instruction")
MAX_ID_LENGTH = 200


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
    line: int = 0
    """Line of the JSONL file, for messages."""


def load_dataset(path: str, categories: Sequence[str] | Mapping[str, Sequence[str]] | None = None, *,
                 allow_missing_images: bool = False) -> list[Sample]:
    """Read and validate a JSONL dataset, reporting every bad line at once.

    Args:
        path: The JSONL file.
        categories: The categories that have judge prompts; a sample of any other category is an error. A
            mapping also gives, for each category, the sample fields its prompts use (`shards.config.
            prompt_fields`): a sample without one is an error.
        allow_missing_images: Accept samples whose image file does not exist (`check_images` then records them
            as failed); an image path that leaves the dataset folder is refused regardless.

    Raises:
        DatasetError: naming, for each problem, the line, the sample id and what is wrong.
    """
    root = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")     # not splitlines(): U+2028 or U+0085 may sit raw inside a string
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read dataset: {e}") from None
    samples, seen, problems = [], {}, []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = parse_line(line, lineno)
        except DatasetError as e:
            problems.append(f"{path}:{e}")
            continue
        where = f"{path}:{lineno}: sample '{_printable(sample.id)}'"
        if sample.id in seen:
            problems.append(f"{where}: duplicate id (first seen on line {seen[sample.id]})")
            continue
        seen[sample.id] = lineno
        if categories is not None and sample.category not in categories:
            problems.append(f"{where}: category '{sample.category}' has no judge prompts in the config "
                            f"(configured: {', '.join(categories)})")
        if isinstance(categories, Mapping):
            for key in categories.get(sample.category, ()):
                if sample.extra.get(key) is None:
                    problems.append(f"{where}: missing field '{key}', which the judge prompts of category "
                                    f"'{sample.category}' use ({{extra[{key}]}})")
        problem = _image_path_problem(root, sample.image, allow_missing_images)
        if problem:
            problems.append(f"{where}: {problem}")
        samples.append(sample)
    if not samples and not problems:
        problems.append(f"{path}: the dataset has no samples")
    if problems:
        raise DatasetError(list_problems(problems))
    return samples


def list_problems(problems: list[str], shown: int = 20) -> str:
    """One problem as it is; several as a count and one line each (at most `shown`), so all can be fixed at once."""
    if len(problems) == 1:
        return problems[0]
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} problems:\n  " + "\n  ".join(problems[:shown]) + more


def parse_line(line: str, lineno: int) -> Sample:
    """One JSONL line as a sample, checked as `load_dataset` checks each line (but its category and image path).

    Raises:
        DatasetError: `<lineno>: sample '<id>': <what is wrong>`.
    """
    try:
        record = json.loads(line)
        text_problem = next(_text_problems(record), None)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{lineno}: not valid JSON: {e}") from None
    except RecursionError:                  # both recurse once per level of nesting
        raise DatasetError(f"{lineno}: nested too deep for Python's JSON reader") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{lineno}: expected a JSON object")
    sample_id = record.get("id")
    label = f"{lineno}: sample '{_printable(sample_id)}'" if isinstance(sample_id, str) else str(lineno)
    if text_problem:
        raise DatasetError(f"{label}: field '{text_problem[0]}' {text_problem[1]}")
    for key in REQUIRED_FIELDS:
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{label}: missing or empty required field '{key}' (a non-empty string)")
    problem = id_problem(sample_id)
    if problem:
        raise DatasetError(f"{label}: {problem}")
    description = record.get("description")
    if description is not None and not isinstance(description, str):
        raise DatasetError(f"{label}: field 'description' must be a string")
    extra = {k: v for k, v in record.items() if k not in (*REQUIRED_FIELDS, "description")}
    return Sample(id=record["id"], category=record["category"], image=record["image"],
                  instruction=record["instruction"], description=description, extra=extra, line=lineno)


def _printable(text: str) -> str:
    """`text` safe to print anywhere: control characters and lone surrogates as backslash escapes."""
    return "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else ascii(c)[1:-1] for c in text)


def _text_problems(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, problem) for every string, key or value, nested at any depth, that is not valid Unicode: the
    tokenizers, JSON writers and the report would otherwise fail on it after the models load."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            yield path, (f"is not valid Unicode text (a lone surrogate {value[e.start]!a} at character {e.start}); "
                         "fix the escape that wrote it")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _text_problems(key, f"{path}.{_printable(key)}".lstrip("."))
            yield from _text_problems(item, f"{path}.{_printable(key)}".lstrip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _text_problems(item, f"{path}[{i}]")


def id_problem(sample_id: str) -> str | None:
    """Why a sample id cannot be carried through logs, file names and reports, or None. Ids are never used raw as
    tensor keys or paths, so any printable text of reasonable length is fine."""
    if any(unicodedata.category(c) == "Cc" for c in sample_id):
        return "the id contains a control character (a newline or tab, say); ids are printed one per log line"
    if len(sample_id) > MAX_ID_LENGTH:
        return f"the id is {len(sample_id)} characters long; at most {MAX_ID_LENGTH} are allowed"
    return None


def leaves_folder(root: str, path: str) -> bool:
    """Whether `path` (relative to the folder `root`, or absolute) is outside that folder once links are resolved:
    a `../` or absolute path, a link to a file elsewhere, or a file under a linked folder elsewhere."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(os.path.join(root, path)), real_root]) != real_root


def _image_path_problem(root: str, image: str, allow_missing: bool) -> str | None:
    full = os.path.realpath(os.path.join(root, image))
    if os.path.isabs(image) or leaves_folder(root, image):
        return f"image path '{image}' leaves the dataset folder {root}"
    if not allow_missing and not os.path.isfile(full):
        return f"not a regular file: {full}" if os.path.exists(full) else f"image file not found: {full}"
    return None


@dataclass(frozen=True)
class ImageCheck:
    """What `check_images` found: every readable image's file digest, and why each other one failed."""

    sha256: dict[str, str]
    """Sample id -> sha256 of its image file, for every image that decodes."""
    failed: dict[str, str]
    """Sample id -> why its image cannot be used (only when failures are allowed)."""


def check_images(samples: Sequence[Sample], dataset_path: str, *, skip_unreadable: bool) -> ImageCheck:
    """Decode every sample's image once, as `open_image` will, and hash its file, before any model loads.

    Args:
        samples: The samples of this run.
        dataset_path: The JSONL file they come from; image paths are relative to its folder.
        skip_unreadable: Record a missing, undecodable or refused image (`shards.images`: its rules) in `failed`
            instead of refusing the dataset.

    Raises:
        DatasetError: naming each sample whose image is missing, cannot be decoded or breaks a rule (unless
            skip_unreadable).
    """
    root = os.path.dirname(os.path.abspath(dataset_path))
    digests, failed = {}, {}
    for sample in samples:
        path = os.path.join(root, sample.image)
        try:
            with open_regular(path) as f:
                data = f.read()
            check_image(data)
        except FileNotFoundError:
            failed[sample.id] = f"image file not found: {path}"
        except ImageError as e:
            failed[sample.id] = f"cannot use image {sample.image}: {e}"
        except (OSError, SyntaxError, ValueError) as e:
            failed[sample.id] = f"cannot decode image {sample.image}: {e}"
        else:
            digests[sample.id] = hashlib.sha256(data).hexdigest()
    if failed and not skip_unreadable:
        lines = [f"{dataset_path}:{s.line}: sample '{s.id}': {failed[s.id]}" for s in samples if s.id in failed]
        raise DatasetError(list_problems(lines) + "\n(set dataset.skip_unreadable_images: true to "
                           "record such samples as failed and run the rest)")
    return ImageCheck(sha256=digests, failed=failed)


def select_samples(samples: Sequence[Any], categories: Sequence[str] | None, limit: int | None,
                   category_of: Callable[[Any], str] = lambda s: s.category,
                   where: Mapping[str, Sequence[str]] | None = None,
                   extra_of: Callable[[Any], dict] = lambda s: s.extra) -> list[Any]:
    """The samples a run works on: those of `categories` (all if None) whose own fields have one of the values
    `where` lists for them, then the first `limit`.

    Works on `Sample`s and, with `category_of` and `extra_of`, on manifest entries, so both stages select alike.
    """
    def wanted(s) -> bool:
        fields = extra_of(s)
        return all(k in fields and str(fields[k]) in values for k, values in (where or {}).items())

    chosen = [s for s in samples if (categories is None or category_of(s) in categories) and wanted(s)]
    return chosen if limit is None else chosen[:limit]


@dataclass(frozen=True)
class RunSamples:
    """The dataset as one run sees it."""

    every: list[Sample]
    """Every sample of the dataset, each line checked (brought edits may name any of them)."""
    selected: list[Sample]
    """The samples the run works on (the config's categories, fields and limit), in dataset order."""


def run_samples(config, *, allow_missing_images: bool = True) -> RunSamples:
    """The dataset of `config` (a `shards.config.RunConfig`), checked against its judge prompts, and the samples
    it selects: the one selection the launcher and both stages make.

    Args:
        allow_missing_images: Let a missing image pass the line checks (the stages' `check_images` then reports it
            with the undecodable ones); the launcher refuses one at once unless the config skips unreadable images.

    Raises:
        DatasetError: naming every bad line.
    """
    from shards.config_prompts import prompt_fields

    every = load_dataset(config.dataset.path, categories=prompt_fields(config),
                         allow_missing_images=allow_missing_images)
    return RunSamples(every=every, selected=select_samples(every, config.dataset.categories, config.dataset.limit,
                                                           where=config.dataset.where))


def checked_run_samples(config) -> tuple[RunSamples, ImageCheck]:
    """`run_samples`, and every selected image decoded and hashed (Pillow), before any model loads: what a stage
    starts from.

    Raises:
        DatasetError: naming every bad line, and each image that cannot be used (unless the config skips them).
    """
    found = run_samples(config)
    return found, check_images(found.selected, config.dataset.path,
                               skip_unreadable=config.dataset.skip_unreadable_images)


def derive_seed(base_seed: int, sample_id: str) -> int:
    """A 63-bit seed from the base seed and the sample id: the same on any rank and any world size."""
    digest = hashlib.sha256(f"{base_seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)

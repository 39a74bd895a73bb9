"""GEdit-Bench (stepfun-ai/GEdit-Bench on the Hugging Face hub) as it ships: a dataset of parquet files (`data/
train-*.parquet`) with `key`, `task_type` (eleven edit types), `instruction`, `instruction_language` (`en` or
`cn`), `input_image` (the image's bytes, embedded), `input_image_raw` and `Intersection_exist`; each of its 606
edits is there once in each language.

SOURCE is the downloaded dataset's folder (its parquet files anywhere below it) or one parquet file. The id is
`<task_type>/<language>/<key>` (a key is shared by the two languages' rows), the task type the category, and the
language, the intersection flag and the key are kept as `language`, `intersection` and `key`. The embedded image
is written as it is (the same bytes, named by their format); nothing is decoded or re-encoded.

Reading parquet needs pyarrow, which the launcher's bare Python lacks: the judge's environment has it, and the
launcher runs this part there.
"""

from __future__ import annotations

import os

from launch.importers.common import BenchmarkError, Reading, Row, not_found
from launch.importers.prompts import PromptFile

# VIEScore's prompts, in the scorer's repository (stepfun-ai/Step1X-Edit), not in the dataset: SCORER's
# GEdit-Bench/viescore/vie_prompts.py (its viescore/__init__.py joins them into the two questions).
PROMPTS = [PromptFile(("GEdit-Bench/viescore/vie_prompts.py", "viescore/vie_prompts.py", "vie_prompts.py"), (
    "_context_no_delimit", "_prompts_0shot_two_image_edit_rule", "_prompts_0shot_tie_rule_SC",
    "_prompts_0shot_rule_PQ"))]

TASK_TYPES = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
              "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")
LANGUAGES = ("en", "cn")
COLUMNS = ("key", "task_type", "instruction", "instruction_language", "input_image")
FORMATS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"GIF8": "gif", b"BM": "bmp"}


def parquet_files(source: str) -> list[str]:
    if os.path.isfile(source) and source.endswith(".parquet"):
        return [source]
    found = sorted(os.path.join(folder, f) for folder, _, files in os.walk(source) for f in files
                   if f.endswith(".parquet")) if os.path.isdir(source) else []
    if not found:
        raise not_found(source, "gedit", ["*.parquet files"])
    return found


def read(source: str) -> Reading:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BenchmarkError("reading GEdit-Bench's parquet files needs pyarrow, which this Python lacks; the "
                             "launcher runs the import in the judge's environment, which has it") from None
    reading = Reading()
    for path in parquet_files(source):
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise BenchmarkError(f"{path}: cannot read it as parquet: {e}") from None
        columns = set(table.column_names)
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise BenchmarkError(f"{path}: missing column(s) {', '.join(missing)} that GEdit-Bench has (found: "
                                 f"{', '.join(sorted(columns))})")
        flag = next((c for c in ("Intersection_exist", "intersection_exist") if c in columns), None)
        for row, record in enumerate(table.to_pylist()):
            add(reading, record, f"{path}: row {row}", flag)
    return reading


def add(reading: Reading, record: dict, where: str, flag: str | None) -> None:
    problems = reading.problems
    values = {c: record.get(c) for c in ("key", "task_type", "instruction", "instruction_language")}
    for column, value in values.items():
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: missing or empty '{column}'")
    if any(not isinstance(v, str) or not v.strip() for v in values.values()):
        return
    key, task, language = values["key"], values["task_type"], values["instruction_language"]
    where = f"{where} (key '{key}')"
    if task not in TASK_TYPES:
        problems.append(f"{where}: task_type '{task}' is not one of GEdit-Bench's ({', '.join(TASK_TYPES)})")
    if language not in LANGUAGES:
        problems.append(f"{where}: instruction_language '{language}' is not en or cn")
    image = record.get("input_image")
    data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
    kind = next((k for magic, k in FORMATS.items() if data and data.startswith(magic)), None)
    if kind == "webp" and data[8:12] != b"WEBP":         # RIFF holds other formats too
        kind = None
    if not data or kind is None:
        problems.append(f"{where}: 'input_image' holds no embedded PNG, JPEG, WebP, GIF or BMP image")
        return
    extra = {"benchmark": "gedit", "key": key, "language": language}
    if flag is not None:
        extra["intersection"] = bool(record.get(flag))
    reading.rows.append(Row(id=f"{task}/{language}/{key}", category=task, instruction=values["instruction"],
                            image=f"{task}/{language}/{key}.{kind}", data=data, extra=extra))

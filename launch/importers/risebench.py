"""RISEBench (PhoenixZ810/RISEBench) as it ships: `data/data_total.json`, a list of samples with `index`,
`category` (temporal, causal, spatial or logical reasoning), `instruction`, `image` (relative to `data/`) and a
reference answer: `reference` or `reference_txt` (text) or `reference_img` (an image, relative to `data/`).

SOURCE is the repository's folder (or its `data/` folder). Each sample keeps its `index` as its id, its reference
text under `reference` and its reference image (copied beside the originals) under `reference_image`.
"""

from __future__ import annotations

import json
import os

from launch.importers.common import BenchmarkError, Reading, Row, not_found, read_json, text
from launch.importers.prompts import PromptFile

CATEGORIES = ("temporal_reasoning", "causal_reasoning", "spatial_reasoning", "logical_reasoning")
# gpt_eval.py's judge prompts, string constants of the repository's utils.py.
PROMPTS = [PromptFile(("utils.py", "../utils.py"), (
    "prompt_consist", "prompt_reasoning", "prompt_reasoning_w_input", "prompt_generation", "prompt_spatial_ref",
    "prompt_spatial_ref_img", "prompt_spatial_ref_w_input", "prompt_spatial_qual", "prompt_spatial_cons",
    "prompt_logical_cons_ans", "prompt_logical_cons", "prompt_logical_txt", "prompt_logical_img",
    "prompt_logical_img_wo_q"))]
# Fields of the 360-sample release that decide which judge prompt its official scorer asks and how it weighs the
# answers (the repository's 64-sample file has none of them); kept when present and not null.
JUDGING_FIELDS = ("subtask", "reasoning_img", "consistency_free", "reasoning_wo_ins")


def read(source: str) -> Reading:
    index = next((p for p in (os.path.join(source, "data", "data_total.json"), os.path.join(source, "data_total.json"))
                  if os.path.isfile(p)), None)
    if index is None:
        raise not_found(source, "risebench", ["data/data_total.json", "data_total.json"])
    root = os.path.dirname(index)
    records = read_json(index, "RISEBench index")
    if not isinstance(records, list):
        raise BenchmarkError(f"{index}: expected a list of samples, got {type(records).__name__}")
    rows, problems = [], []
    for position, record in enumerate(records):
        where = f"{index}: sample {position}"
        if not isinstance(record, dict):
            problems.append(f"{where}: expected an object")
            continue
        sample_id = text(record, "index", where, problems)
        where = f"{index}: sample '{sample_id}'" if sample_id else where
        category = text(record, "category", where, problems)
        instruction = text(record, "instruction", where, problems)
        image = text(record, "image", where, problems)
        if category and category not in CATEGORIES:
            problems.append(f"{where}: category '{category}' is not one of RISEBench's ({', '.join(CATEGORIES)})")
        reference = record.get("reference") or record.get("reference_txt")
        reference_image = record.get("reference_img")
        if reference_image is not None and not isinstance(reference_image, str):
            problems.append(f"{where}: 'reference_img' must be a path (text), got {json.dumps(reference_image)}")
            continue
        if not reference and not reference_image:
            problems.append(f"{where}: no reference answer ('reference', 'reference_txt' or 'reference_img')")
        if None in (sample_id, category, instruction, image):
            continue
        extra = {"benchmark": "risebench"}
        copies = {}
        if reference:
            extra["reference"] = reference
        extra.update({k: record[k] for k in JUDGING_FIELDS if record.get(k) is not None})
        if reference_image:
            extra["reference_image"] = f"images/{reference_image}"
            copies[extra["reference_image"]] = os.path.join(root, reference_image)
        rows.append(Row(id=sample_id, category=category, instruction=instruction, image=image,
                        source=os.path.join(root, image), extra=extra, copies=copies))
    return Reading(rows, problems)

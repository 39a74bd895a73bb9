"""KRIS-Bench (mercurystraw/Kris_Bench) as it ships: `KRIS_Bench/<task>/annotation.json` for each of its task
folders, a mapping of key to `{ori_img, ins_en, explain_en, ...}` with the images in the same folder (`gt_img`, a
ground-truth edit, where there is one).

SOURCE is the repository's folder (or its `KRIS_Bench/` folder). The task folder is the category and
`<task>/<key>` the id; the English instruction is the instruction; `explain_en` (what a correct edit shows) is
kept under `explanation`, which the judge prompts of the knowledge tasks show to the judge, and `gt_img` under
`reference_image`. A sample with several input images (`ori_img` a list, as multi-element composition has) cannot
be edited as one image: such samples are left out, counted and named.
"""

from __future__ import annotations

import os

from launch.importers.common import BenchmarkError, Reading, Row, not_found, read_json, text
from launch.importers.prompts import PromptFile

# The judge prompts its metrics_*.py import (`from utils.prompts import ...`), for the single-image tasks.
PROMPTS = [PromptFile(("utils/prompts.py", "../utils/prompts.py"), (
    "prompt_consist", "prompt_quality", "prompt_instruction_following", "prompt_dual_evaluation",
    "prompt_view_instruction_following"))]

# The tasks whose official evaluation shows the judge the explanation (knowledge plausibility, and the anomaly
# correction's instruction following): their samples must have one.
EXPLAINED = ("abstract_reasoning", "mathematics", "practical_knowledge", "medicine", "rule-based_reasoning",
             "biology", "geography", "chemistry", "humanities", "physics", "anomaly_correction")


def read(source: str) -> Reading:
    root = os.path.join(source, "KRIS_Bench") if os.path.isdir(os.path.join(source, "KRIS_Bench")) else source
    tasks = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "annotation.json"))) \
        if os.path.isdir(root) else []
    if not tasks:
        raise not_found(source, "kris", ["KRIS_Bench/<task>/annotation.json"])
    rows, problems, left_out = [], [], []
    for task in tasks:
        path = os.path.join(root, task, "annotation.json")
        annotations = read_json(path, "KRIS-Bench annotation")
        if not isinstance(annotations, dict):
            raise BenchmarkError(f"{path}: expected a mapping of key to sample, got {type(annotations).__name__}")
        for key, record in annotations.items():
            where = f"{path}: sample '{key}'"
            if not isinstance(record, dict):
                problems.append(f"{where}: expected an object")
                continue
            images = record.get("ori_img")
            if isinstance(images, list) and len(images) == 1:
                images = images[0]
            if isinstance(images, list):
                left_out.append(f"{task}/{key}")
                continue
            image = text({"ori_img": images}, "ori_img", where, problems)     # the one image of a list of one
            instruction = text(record, "ins_en", where, problems, "instruction")
            explanation = record.get("explain_en") or record.get("explain")
            if task in EXPLAINED and not explanation:
                problems.append(f"{where}: missing field 'explain_en', which the judge of task '{task}' is shown")
            if image is None or instruction is None:
                continue
            extra = {"benchmark": "kris", "task": task}
            copies = {}
            if explanation:
                extra["explanation"] = explanation
            if isinstance(record.get("gt_img"), str) and record["gt_img"]:
                extra["reference_image"] = f"images/{task}/{record['gt_img']}"
                copies[extra["reference_image"]] = os.path.join(root, task, record["gt_img"])
            rows.append(Row(id=f"{task}/{key}", category=task, instruction=instruction, image=f"{task}/{image}",
                            source=os.path.join(root, task, image), extra=extra, copies=copies))
    notes = [f"left out {len(left_out)} sample(s) with several input images, which this tool does not edit as "
             f"one image: {', '.join(left_out)}"] if left_out else []
    return Reading(rows, problems, notes)

"""The dataset loader: the demo is valid, and each kind of bad line is refused with its line and sample."""

import json
import os
import shutil
from collections import Counter

import pytest

from conftest import DEMO_DATASET
from shards.dataset import DatasetError, load_dataset, select_samples

FIVE = ["物理", "环境", "社会", "因果", "指代"]


def test_demo_dataset_has_two_or_more_samples_in_each_of_five_categories():
    samples = load_dataset(DEMO_DATASET, categories=FIVE)
    assert len(samples) >= 10
    counts = Counter(s.category for s in samples)
    assert set(counts) == set(FIVE) and min(counts.values()) >= 2
    assert len({s.id for s in samples}) == len(samples)
    assert any(s.description is None for s in samples)         # the optional field really is optional
    assert samples[0].extra == {"difficulty": "easy"}          # extra keys are kept


def _dataset(tmp_path, records) -> str:
    (tmp_path / "images").mkdir(exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(DEMO_DATASET), "images", "phys-01.png"), tmp_path / "images" / "a.png")
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n",
                    encoding="utf-8")
    return str(path)


GOOD = {"id": "a", "category": "物理", "image": "images/a.png", "instruction": "drop it"}


@pytest.mark.parametrize("records, expected", [
    ([GOOD, GOOD], ":2: sample 'a': duplicate id (first seen on line 1)"),
    ([{**GOOD, "instruction": ""}], ":1: sample 'a': missing or empty required field 'instruction'"),
    ([{k: v for k, v in GOOD.items() if k != "category"}], "missing or empty required field 'category'"),
    ([{**GOOD, "image": "../../etc/passwd"}], "image path '../../etc/passwd' leaves the dataset folder"),
    ([{**GOOD, "image": "/etc/hostname"}], "leaves the dataset folder"),
    ([{**GOOD, "image": "images/missing.png"}], "sample 'a': image file not found"),
    ([{**GOOD, "category": "魔法"}], "category '魔法' has no judge prompts in the config"),
    ([GOOD, "{not json"], ":2: not valid JSON"),
    (["[1, 2]"], ":1: expected a JSON object"),
    ([{**GOOD, "description": 3}], "field 'description' must be a string"),
    ([""], "the dataset has no samples"),
])
def test_bad_lines_are_refused_with_line_and_sample(tmp_path, records, expected):
    path = _dataset(tmp_path, records)
    with pytest.raises(DatasetError) as info:
        load_dataset(path, categories=FIVE)
    assert str(info.value).startswith(path)
    assert expected in str(info.value)


def test_missing_dataset_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(str(tmp_path / "nope.jsonl"))


def test_selection_filters_categories_then_limits_in_dataset_order():
    samples = load_dataset(DEMO_DATASET, categories=FIVE)
    chosen = select_samples(samples, ["指代", "物理"], 3)
    assert [s.id for s in chosen] == ["phys-01", "phys-02", "ref-01"]
    assert select_samples(samples, None, None) == samples

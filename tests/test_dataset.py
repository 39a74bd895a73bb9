"""The dataset loader: the demo is valid, and each kind of bad line is refused with its line and sample."""

import hashlib
import json
import os
import shutil
from collections import Counter

import pytest
from PIL import Image

from conftest import DEMO_DATASET
from shards.dataset import DatasetError, check_images, load_dataset, select_samples

FIVE = ["物理", "环境", "社会", "因果", "指代"]


def test_demo_dataset_has_two_or_more_samples_in_each_of_five_categories():
    samples = load_dataset(DEMO_DATASET, categories=FIVE)
    assert len(samples) >= 10
    counts = Counter(s.category for s in samples)
    assert set(counts) == set(FIVE) and min(counts.values()) >= 2
    assert len({s.id for s in samples}) == len(samples)
    assert any(s.description is None for s in samples)         # the optional field really is optional
    assert samples[0].extra == {"difficulty": "easy", "human_score": 6.5}   # extra keys are kept


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
    ([{**GOOD, "id": "a\nb"}], "sample 'a\\nb': the id contains a control character"),
    ([json.dumps(GOOD)[:-1] + ', "note": {"why": "\\ud83d"}}'],
     ":1: sample 'a': field 'note.why' is not valid Unicode text (a lone surrogate"),
    ([json.dumps({**GOOD, "instruction": "x"}).replace('"x"', '"\\ud83d drop"')],
     ":1: sample 'a': field 'instruction' is not valid Unicode text"),
    ([json.dumps({**GOOD, "id": "x"}).replace('"x"', '"\\udc00"')],
     ":1: sample '\\udc00': field 'id' is not valid Unicode text"),
    # Nested deeper than Python's parser (or the text check) recurses: a RecursionError traceback before.
    ([json.dumps(GOOD)[:-1] + ', "deep": ' + "[" * 100000 + "]" * 100000 + "}"], ":1: nested too deep for Python's JSON reader"),
    ([json.dumps(GOOD)[:-1] + ', "deep": ' + "[" * 990 + "]" * 990 + "}"], ":1: nested too deep for Python's JSON reader"),
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


def test_every_problem_is_listed_at_once(tmp_path):
    path = _dataset(tmp_path, [GOOD, {**GOOD, "id": "b", "category": "魔法"}, GOOD, "{not json"])
    with pytest.raises(DatasetError) as info:
        load_dataset(path, categories=FIVE)
    message = str(info.value)
    assert message.startswith("3 problems:\n")
    assert f"{path}:2: sample 'b': category '魔法'" in message
    assert f"{path}:3: sample 'a': duplicate id" in message and f"{path}:4: not valid JSON" in message


def test_a_missing_image_may_be_allowed_but_a_path_leaving_the_folder_never(tmp_path):
    path = _dataset(tmp_path, [{**GOOD, "image": "images/missing.png"}])
    assert [s.id for s in load_dataset(path, categories=FIVE, allow_missing_images=True)] == ["a"]
    path = _dataset(tmp_path, [{**GOOD, "image": "../outside.png"}])
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        load_dataset(path, categories=FIVE, allow_missing_images=True)


def _broken_images(tmp_path):
    """Five samples: one good, and an image that is truncated PNG, truncated JPEG, not an image, and missing."""
    images = tmp_path / "images"
    good = (images / "a.png").read_bytes()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(images / "photo.jpg", quality=90)
    jpeg = (images / "photo.jpg").read_bytes()
    (images / "cut.png").write_bytes(good[: len(good) // 2])
    (images / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (images / "text.png").write_text("this is not an image")
    return [{**GOOD, "id": name, "image": f"images/{file}"} for name, file in
            [("good", "a.png"), ("cut-png", "cut.png"), ("cut-jpg", "cut.jpg"), ("text", "text.png"),
             ("gone", "gone.png")]]


def test_undecodable_images_are_refused_naming_each_sample(tmp_path):
    _dataset(tmp_path, [GOOD])                              # copies the good image into place
    path = _dataset(tmp_path, _broken_images(tmp_path))
    samples = load_dataset(path, categories=FIVE, allow_missing_images=True)
    with pytest.raises(DatasetError) as info:
        check_images(samples, path, skip_unreadable=False)
    message = str(info.value)
    assert message.startswith("4 problems:")
    for lineno, sample_id in [(2, "cut-png"), (3, "cut-jpg"), (4, "text")]:
        assert f"{path}:{lineno}: sample '{sample_id}': cannot decode image" in message
    assert f"{path}:5: sample 'gone': image file not found" in message
    assert "dataset.skip_unreadable_images" in message
    assert "sample 'good'" not in message


def test_undecodable_images_can_be_recorded_as_failed_instead(tmp_path):
    _dataset(tmp_path, [GOOD])                              # copies the good image into place
    path = _dataset(tmp_path, _broken_images(tmp_path))
    samples = load_dataset(path, categories=FIVE, allow_missing_images=True)
    found = check_images(samples, path, skip_unreadable=True)
    assert set(found.failed) == {"cut-png", "cut-jpg", "text", "gone"}
    assert found.failed["cut-png"].startswith("cannot decode image images/cut.png: ")
    good = tmp_path / "images" / "a.png"
    assert found.sha256 == {"good": hashlib.sha256(good.read_bytes()).hexdigest()}


def test_an_image_is_read_with_its_exif_orientation_applied(tmp_path):
    from shards.dataset import open_image

    stored = Image.new("RGB", (60, 20), (200, 30, 30))             # stored sideways, as a phone writes it
    exif = Image.Exif()
    exif[0x0112] = 6                                                 # orientation: rotate 90 degrees clockwise
    stored.save(tmp_path / "phone.jpg", exif=exif)
    shown = open_image(str(tmp_path / "phone.jpg"))
    assert shown.size == (20, 60) and shown.mode == "RGB"


def test_every_image_the_tool_reads_goes_through_open_image():
    import ast

    from conftest import project_sources

    checked = 0
    for path, text in project_sources():
        if os.path.basename(path) == "tiny.py":
            continue
        opens = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call) and ast.unparse(n.func) == "Image.open"]
        if path != os.path.join("shards", "images.py"):
            assert not opens, f"{path} opens an image without applying its EXIF orientation"
        checked += 1
    assert checked > 60 and any(path.startswith(os.path.join("launch", "importers")) for path, _ in project_sources())


def test_a_line_separator_inside_a_text_is_part_of_the_text_not_a_new_line(tmp_path):
    # JSON Lines ends a line at "\n" only; json.dumps(..., ensure_ascii=False), as import-benchmark writes, keeps
    # U+2028, U+2029 and U+0085 raw inside strings, where str.splitlines() would cut the line in three.
    instruction = "first\u2028second\u2029third\x85fourth\x0bfifth\x1cend"
    path = _dataset(tmp_path, [{**GOOD, "instruction": instruction}, {**GOOD, "id": "b"}])
    with open(path, "rb") as f:
        assert f.read().count(b"\n") == 2                                   # two lines, as written
    samples = load_dataset(path)
    assert [s.instruction for s in samples] == [instruction, "drop it"]
    assert [s.line for s in samples] == [1, 2]

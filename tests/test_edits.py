"""Finding brought edits: a folder holds `<id>.png` with the id's folders (GEdit-Bench's and KRIS-Bench's ids have
them), a JSONL lists paths; an image outside the source, by `../`, an absolute path or a link, is refused."""

import json
import os

import pytest
from PIL import Image

from shards.brought_edits import find_edits
from shards.dataset import DatasetError

GEDIT = ["color_alter/en/a1", "color_alter/cn/a1", "subject-add/en/b2"]


def _png(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    return str(path)


def _refusal(source, wanted, known=None) -> str:
    with pytest.raises(DatasetError) as info:
        find_edits(str(source), wanted, known or wanted)
    return str(info.value)


def test_a_folder_holds_ids_with_folders_as_folders(tmp_path):
    edits = tmp_path / "edits"
    for sample_id in GEDIT:
        _png(edits / f"{sample_id}.png")
    found = find_edits(str(edits), GEDIT, GEDIT)
    assert found == {i: str(edits / f"{i}.png") for i in GEDIT}


def test_in_a_folder_extra_and_duplicate_images_are_named_at_any_depth(tmp_path):
    edits = tmp_path / "edits"
    for sample_id in GEDIT:
        _png(edits / f"{sample_id}.png")
    _png(edits / "color_alter" / "en" / "a1.jpg")                     # a second image for one id
    _png(edits / "color_alter" / "de" / "a1.png")                     # an id the dataset does not have
    _png(edits / ".thumbnails" / "x.png")                             # hidden: not looked at
    message = _refusal(edits, GEDIT)
    assert "two images for sample 'color_alter/en/a1': color_alter/en/a1.jpg and color_alter/en/a1.png" in message
    assert "an edited image for 'color_alter/de/a1', which is not a sample of the dataset" in message
    assert message.startswith("2 problems:")


def test_an_id_with_dot_dot_never_finds_an_image_outside_the_folder(tmp_path):
    _png(tmp_path / "secret.png")
    (tmp_path / "edits").mkdir()
    message = _refusal(tmp_path / "edits", ["../secret"])
    assert "no edited image for sample '../secret'" in message


def test_in_a_folder_a_link_that_leaves_it_is_refused(tmp_path):
    edits = tmp_path / "edits"
    _png(edits / "color_alter" / "cn" / "a1.png")
    os.makedirs(edits / "color_alter" / "en")
    os.symlink(_png(tmp_path / "elsewhere" / "a1.png"), edits / "color_alter" / "en" / "a1.png")
    os.symlink(tmp_path / "elsewhere", edits / "subject-add")         # a linked folder, outside
    _png(tmp_path / "elsewhere" / "en" / "b2.png")
    message = _refusal(edits, GEDIT)
    assert f"{edits / 'color_alter' / 'en' / 'a1.png'}: the image is a link to a file outside {edits}" in message
    assert f"{edits / 'subject-add'}: the folder is a link to a folder outside {edits}" in message


def test_in_a_folder_a_link_that_stays_inside_is_followed(tmp_path):
    edits = tmp_path / "edits"
    _png(edits / "kept" / "a.png")
    os.symlink(edits / "kept" / "a.png", edits / "b.png")
    found = find_edits(str(edits), ["b"], ["b", "kept/a"])
    assert found == {"b": str(edits / "b.png"), "kept/a": str(edits / "kept" / "a.png")}


def _jsonl(folder, lines) -> str:
    path = folder / "list.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


@pytest.mark.parametrize("edited", ["../outside.png", "{tmp}/outside.png", "~/outside.png", "link.png",
                                    "linked/outside.png"])
def test_a_jsonl_path_that_leaves_its_folder_is_refused_like_a_dataset_image(tmp_path, edited):
    _png(tmp_path / "outside.png")
    folder = tmp_path / "edits"
    folder.mkdir()
    os.symlink(tmp_path / "outside.png", folder / "link.png")
    os.symlink(tmp_path, folder / "linked")
    edited = edited.format(tmp=tmp_path)
    path = _jsonl(folder, [{"id": "a", "edited": edited}])
    message = _refusal(path, ["a"])
    assert f"{path}:1: sample 'a': edited image path '{edited}' leaves the folder {folder}" in message


def test_a_jsonl_path_inside_its_folder_is_taken(tmp_path):
    folder = tmp_path / "edits"
    _png(folder / "deep" / "a.png")
    path = _jsonl(folder, [{"id": "color_alter/en/a1", "edited": "deep/a.png"}])
    assert find_edits(path, ["color_alter/en/a1"], ["color_alter/en/a1"]) == \
        {"color_alter/en/a1": str(folder / "deep" / "a.png")}


def test_in_a_folder_a_linked_folder_inside_is_not_entered_twice_and_cannot_loop(tmp_path):
    edits = tmp_path / "edits"
    _png(edits / "kept" / "a.png")
    os.symlink(edits / "kept", edits / "alias")
    os.symlink(edits, edits / "kept" / "up")                            # a link back up: a loop if followed
    assert find_edits(str(edits), ["kept/a"], ["kept/a"]) == {"kept/a": str(edits / "kept" / "a.png")}


def test_a_source_folder_that_is_itself_a_link_is_read_where_it_leads(tmp_path):
    _png(tmp_path / "results" / "color_alter" / "en" / "a1.png")
    os.symlink(tmp_path / "results", tmp_path / "edits")
    found = find_edits(str(tmp_path / "edits"), ["color_alter/en/a1"], ["color_alter/en/a1"])
    assert found == {"color_alter/en/a1": str(tmp_path / "edits" / "color_alter" / "en" / "a1.png")}


def test_an_image_name_that_is_no_readable_file_is_named_in_a_folder_and_a_jsonl(tmp_path):
    # Found and then read for the source's digest, a FIFO would block the launcher for ever and a link to nothing
    # end it with a traceback.
    edits = tmp_path / "edits"
    _png(edits / "a.png")
    os.mkfifo(edits / "pipe.png")
    os.symlink("nothing-here.png", edits / "dangling.png")
    (edits / "folder.png").mkdir()                                     # a folder named like an image: a folder
    message = _refusal(edits, ["a", "pipe", "dangling"])
    assert f"{edits / 'pipe.png'}: not a regular file" in message
    assert f"{edits / 'dangling.png'}: " in message and "No such file" in message
    path = _jsonl(edits, [{"id": "a", "edited": "a.png"}, {"id": "pipe", "edited": "pipe.png"},
                          {"id": "dangling", "edited": "dangling.png"}])
    message = _refusal(path, ["a", "pipe", "dangling"])
    assert f"{path}:2: sample 'pipe': {edits / 'pipe.png'}: not a regular file" in message
    assert f"{path}:3: sample 'dangling': {edits / 'dangling.png'}: No such file or directory" in message


def test_a_jsonl_line_with_a_nul_or_bytes_that_are_not_utf8_is_named_with_its_line(tmp_path):
    folder = tmp_path / "edits"
    _png(folder / "a.png")
    path = folder / "list.jsonl"
    path.write_bytes(b'{"id": "a", "edited": "a.png\\u0000"}\n{"id": "b", "edited": "\xe9.png"}\n'
                     b'{"id": "c\\ud800", "edited": "a.png"}\n' + b"[" * 100000 + b"]" * 100000 + b"\n")
    message = _refusal(path, ["a", "b"], ["a", "b"])
    assert f"{path}:1: sample 'a': edited image path 'a.png\\x00' holds a NUL character" in message
    assert f"{path}:2: not UTF-8 text" in message
    assert "an edited image for 'c\\ud800', which is not a sample" in message
    assert f"{path}:4: nested too deep for Python's JSON reader" in message
    message.encode("utf-8")                                             # printable, whatever the ids hold


def test_a_file_named_in_another_unicode_normalization_is_its_ids_image(tmp_path):
    # macOS writes file names decomposed (NFD); a dataset's JSON holds them composed (NFC), as typed.
    import unicodedata

    composed = ["café/crème", "한국"]
    edits = tmp_path / "edits"
    for sample_id in composed:
        _png(edits / f"{unicodedata.normalize('NFD', sample_id)}.png")
    found = find_edits(str(edits), composed, composed)
    assert found == {i: str(edits / f"{unicodedata.normalize('NFD', i)}.png") for i in composed}
    both = ["café", unicodedata.normalize("NFD", "café")]                 # a dataset that holds both forms
    for sample_id in both:
        _png(tmp_path / "both" / f"{sample_id}.png")
    assert find_edits(str(tmp_path / "both"), both, both) == {i: str(tmp_path / "both" / f"{i}.png") for i in both}
    _png(edits / f"{unicodedata.normalize('NFC', '한국')}.png")             # one id's image in both forms
    assert "two images for sample '한국' (their names differ only in Unicode normalization)" in \
        _refusal(edits, composed, composed)


def test_an_id_a_folder_cannot_hold_says_to_list_it_in_a_jsonl(tmp_path):
    edits = tmp_path / "edits"
    _png(edits / "a.png")
    odd = ["/abs", "trailing/", "a//b", "./a", "x/../a", ".hidden", "é" * 130]
    message = _refusal(edits, odd, odd + ["a"])
    for sample_id in odd:
        assert f"no edited image for sample '{sample_id}' (no file name in a folder can hold this id: list its " \
               "image in a JSONL file" in message

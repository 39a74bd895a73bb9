"""Edits brought from elsewhere: the same shards and manifest as the edit stage's, every problem named first."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import base_python, run_module
from shards.manifest import read_manifest
from shards.store import read_image

pytestmark = pytest.mark.slow


def _export(out: str, folder) -> dict:
    """Every edited image of a run as `<id>.png` (lossless); returns sample id -> pixels."""
    os.makedirs(folder, exist_ok=True)
    pixels = {}
    for sample in read_manifest(out)["samples"]:
        image = read_image(out, sample).numpy()
        Image.fromarray(image).save(os.path.join(folder, f"{sample['id']}.png"))
        pixels[sample["id"]] = image
    return pixels


def _report(out: str) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def test_the_demos_edits_brought_back_as_png_get_the_demos_scores(demo_run, tmp_path):
    config, demo = demo_run
    _export(demo, tmp_path / "edits")
    out = str(tmp_path / "imported")
    done = run_module(base_python(), ["-m", "launch", "--config", config, "--output-dir", out,
                                      "--edits", str(tmp_path / "edits")], timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = read_manifest(out)
    assert manifest["model"]["source"] == "imported" and manifest["model"]["label"].startswith("edits imported")
    ours = {s["id"]: s for s in read_manifest(demo)["samples"]}
    assert {s["id"]: s["sha256"] for s in manifest["samples"]} == {i: s["sha256"] for i, s in ours.items()}
    scores = {s["id"]: s["score"] for s in _report(out)["samples"]}
    assert scores == {s["id"]: s["score"] for s in _report(demo)["samples"]}     # same judge, same pixels
    again = run_module(base_python(), ["-m", "launch", "--config", config, "--output-dir", out,
                                       "--edits", str(tmp_path / "edits")], timeout=1200)
    assert again.returncode == 0 and "10 already imported, 0 failed to load, 0 to import" in again.stdout


def test_missing_extra_duplicate_and_undecodable_edits_are_named_before_anything_is_written(pythons, demo_run,
                                                                                           tmp_path):
    config, demo = demo_run
    edits = tmp_path / "edits"
    _export(demo, edits)
    os.remove(edits / "env-02.png")                                          # missing
    shutil.copy(edits / "phys-01.png", edits / "phys-01.jpg")                # duplicate
    shutil.copy(edits / "ref-01.png", edits / "ref-99.png")                  # extra: no such sample
    (edits / "soc-01.png").write_bytes(b"not an image at all")               # undecodable
    out = tmp_path / "out"
    done = run_module(pythons["edit"], ["-m", "edit_stage.brought_edits", "--config", config, "--output-dir", str(out),
                                        "--edits", str(edits)])
    assert done.returncode == 2
    assert "two images for sample 'phys-01'" in done.stderr and "no edited image for sample 'env-02'" in done.stderr
    assert "'ref-99', which is not a sample of the dataset" in done.stderr
    assert not out.exists()
    os.remove(edits / "phys-01.jpg"), os.remove(edits / "ref-99.png")
    shutil.copy(edits / "env-01.png", edits / "env-02.png")
    done = run_module(pythons["edit"], ["-m", "edit_stage.brought_edits", "--config", config, "--output-dir", str(out),
                                        "--edits", str(edits)])
    assert done.returncode == 2 and "sample 'soc-01': cannot decode the edited image" in done.stderr
    assert not out.exists()


def test_a_jsonl_source_another_size_and_exif_orientation(pythons, demo_run, tmp_path):
    config, demo = demo_run
    edits = tmp_path / "edits"
    pixels = _export(demo, edits)
    big = Image.fromarray(pixels["phys-01"]).resize((96, 80))
    big.save(edits / "big.png")
    exif = Image.Exif()
    exif[0x0112] = 6                                                         # shown rotated: 64x32 stored
    Image.new("RGB", (64, 32), (9, 9, 9)).save(edits / "sideways.jpg", exif=exif)
    Image.fromarray(np.arange(65536, dtype=np.uint16).reshape(256, 256)).save(edits / "deep.png")     # 16-bit
    lines = [{"id": i, "edited": f"{i}.png"} for i in pixels if i not in ("phys-01", "phys-02", "ref-01")]
    lines += [{"id": "phys-01", "edited": "big.png"}, {"id": "phys-02", "edited": "sideways.jpg"},
              {"id": "ref-01", "edited": "deep.png"}]
    (edits / "list.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    out = str(tmp_path / "out")
    done = run_module(pythons["edit"], ["-m", "edit_stage.brought_edits", "--config", config, "--output-dir", out,
                                        "--edits", str(edits / "list.jsonl")])
    assert done.returncode == 0, done.stderr
    samples = {s["id"]: s for s in read_manifest(out)["samples"]}
    assert (samples["phys-01"]["width"], samples["phys-01"]["height"]) == (96, 80)
    assert (samples["phys-01"]["original_width"], samples["phys-01"]["original_height"]) == (96, 64)
    assert tuple(read_image(out, samples["phys-02"]).shape) == (64, 32, 3)        # upright: 32 wide, 64 high
    gradient = read_image(out, samples["ref-01"]).numpy()                           # scaled, not clipped to white
    assert len(np.unique(gradient)) == 256 and (gradient == 255).all(axis=-1).mean() < 0.01

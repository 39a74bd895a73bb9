"""LoRA adapters on the editor: they change the images, fusing them does not, and their scale is part of a run."""

import pytest

from conftest import copy_run, run_module, torchrun, write_config
from shards.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora(pythons, demo_run, tmp_path_factory) -> str:
    """A random LoRA made for the demo's tiny pipeline."""
    folder = tmp_path_factory.mktemp("lora") / "tiny-lora"
    pipeline = read_manifest(demo_run[1])["config"]["edit"]["model"]
    done = run_module(pythons["edit"], ["-m", "edit_stage.tiny", "--output", str(folder), "--lora-for", pipeline])
    assert done.returncode == 0, done.stderr
    return str(folder)


def _lora_run(pythons, tmp_path, lora, scale, out=None, **changes):
    config = write_config(tmp_path, {"edit.lora": [{"path": lora, "scale": scale}], **changes})
    out = out or str(tmp_path / "run")
    return config, out, torchrun(pythons["edit"], "edit_stage", 2, ["--config", config, "--output-dir", out,
                                                                      "--limit", "4"])


@pytest.fixture(scope="module")
def lora_run(pythons, lora, tmp_path_factory) -> str:
    """The output folder of one edit run with the LoRA at scale 0.8, fused (the default), shared by the tests
    below; a test that writes into it works on a copy."""
    _, out, done = _lora_run(pythons, tmp_path_factory.mktemp("lora-run"), lora, 0.8)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_a_lora_changes_the_images_and_is_recorded_with_its_scale_and_digest(demo_run, lora_run):
    manifest = read_manifest(lora_run)
    plain = {s["id"]: s["sha256"] for s in read_manifest(demo_run[1])["samples"]}
    assert all(s["sha256"] != plain[s["id"]] for s in manifest["samples"])          # every image changed
    (record,) = manifest["model"]["lora"]
    assert record["scale"] == 0.8 and len(record["sha256"]) == 64 and manifest["model"]["fuse_lora"] is True
    assert manifest["model"]["label"].endswith(" + LoRA tiny-lora x0.8, 2 steps, CFG 4")


def test_a_resume_with_another_lora_scale_is_refused(pythons, lora, lora_run, tmp_path):
    out = copy_run(lora_run, str(tmp_path / "run"))
    _, _, again = _lora_run(pythons, tmp_path, lora, 0.5, out=out)
    assert again.returncode != 0
    assert "holds edit work of a different run" in again.stderr and "edit.lora: was" in again.stderr


def test_a_fused_lora_gives_the_unfused_images(pythons, lora, lora_run, tmp_path):
    assert read_manifest(lora_run)["model"]["fuse_lora"] is True
    runs = {True: lora_run, False: str(tmp_path / "fuse-False")}
    _, _, done = _lora_run(pythons, tmp_path, lora, 0.8, out=runs[False], **{"edit.fuse_lora": False})
    assert done.returncode == 0, done.stdout + done.stderr
    code = ("import sys; from shards.manifest import read_manifest; from shards.store import read_image; "
            "a, b = sys.argv[1:]; ma = {s['id']: s for s in read_manifest(a)['samples']}; "
            "print(max(int((read_image(a, ma[s['id']]).int() - read_image(b, s).int()).abs().max()) "
            "for s in read_manifest(b)['samples']))")
    done = run_module(pythons["edit"], ["-c", code, runs[True], runs[False]])
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) <= 1                          # in 0-255 units: rounding, nothing more

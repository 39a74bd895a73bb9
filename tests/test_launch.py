"""The launcher: the whole demo end to end with both environments, a failing stage, and early config errors."""

import json
import os
import re
import time

import pytest

from conftest import DEMO_CONFIG, DEMO_DATASET, base_python, run_module, write_config
from shards.dataset import load_dataset
from shards.store import read_manifest, verify_shards

pytestmark = pytest.mark.slow
FIVE = ["物理", "环境", "社会", "因果", "指代"]


def launch(args, timeout=1800):
    return run_module(base_python(), ["-m", "launch", *args], timeout=timeout)


def test_demo_end_to_end(pythons, tmp_path):
    out = str(tmp_path / "demo")
    done = launch(["--config", DEMO_CONFIG, "--output-dir", out])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    ids = [s.id for s in load_dataset(DEMO_DATASET)]
    assert sorted(s["id"] for s in report["samples"]) == sorted(ids)       # every sample exactly once
    assert list(report["categories"]) == FIVE
    assert report["world_size"] == {"edit": 2, "score": 2}
    manifest = read_manifest(out)
    verify_shards(out, manifest["shards"])          # raises if a listed shard is missing or differs
    envs = {stage: (python, transformers) for stage, python, transformers in re.findall(
        r"\[launch\] (edit|score) environment: (\S+) \(.*?transformers (\S+?)[,)]", output)}
    assert envs["edit"][0] != envs["score"][0]
    assert envs["edit"][1].startswith("4.57.") and envs["score"][1].startswith("5.")
    assert "| **overall** | 10 |" in output and f"[launch] report: {out}/report.json" in output


def test_a_failing_stage_is_named_with_the_ranks_error(pythons, tmp_path):
    config = write_config(tmp_path, changes={"edit.model": str(tmp_path / "no-such-model"), "edit.build_tiny": False})
    start = time.monotonic()
    done = launch(["--config", config, "--output-dir", str(tmp_path / "o")], timeout=600)
    assert done.returncode == 1
    assert "[launch] error: edit stage failed (exit status 1)" in done.stderr
    assert re.search(r"--- rank [01]: ", done.stderr) and "no-such-model" in done.stderr
    assert "score stage:" not in done.stdout                   # it stopped there
    assert time.monotonic() - start < 300


def test_config_errors_come_before_any_environment_is_made(tmp_path):
    venv = tmp_path / "never-made"
    config = write_config(tmp_path, changes={"score.max_new_token": 3, "edit.env": {"venv": str(venv)}})
    done = launch(["--config", config], timeout=120)
    assert done.returncode == 2
    assert "score.max_new_token: unknown key; did you mean 'max_new_tokens'?" in done.stderr
    assert not venv.exists()


def test_unknown_category_on_the_command_line(tmp_path):
    done = launch(["--config", DEMO_CONFIG, "--categories", "物理", "社交"], timeout=120)
    assert done.returncode == 2
    assert "dataset.categories[1]: unknown category '社交'" in done.stderr

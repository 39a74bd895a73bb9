"""The launcher: the whole demo end to end with both environments, a failing stage, and early config errors."""

import json
import os
import re
import time

import pytest

from conftest import DEMO_CONFIG, DEMO_DATASET, base_python, copy_run, run_module, write_config
from launch.stages import _root_cause
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
    assert "| **mean over samples** | 10 | 10 | 0 | 0 |" in output and "| **mean over categories** | 5 categories" in output
    assert report["overall"]["unparsed"] == 0                        # expected mode: every sample has a score
    assert f"[launch] report: {out}/report.html" in output and f"[launch] data: {out}/report.json" in output

    again = launch(["--config", DEMO_CONFIG, "--output-dir", out, "--nproc-per-node", "1"])
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert "10 already edited (verified), 0 failed to load, 0 to edit on 1 ranks" in output
    assert "10 judged before, 0 failed in the edit stage, 0 to judge on 1 ranks" in output
    assert not re.search(r"\] edited \S+ in ", output) and " score=" not in output
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        again_report = json.load(f)
    assert again_report["samples"] == report["samples"]
    assert [a["world_size"] for a in again_report["attempts"]["score"]] == [2, 1]


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


def test_a_folder_of_another_run_is_refused_before_any_environment_is_used(demo_run, tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"))
    venv = tmp_path / "never-made"
    config = write_config(tmp_path, {"edit.true_cfg_scale": 2.5, "edit.env": {"venv": str(venv)}})
    done = launch(["--config", config, "--output-dir", out], timeout=120)
    assert done.returncode == 2
    assert "holds edit work of a different run" in done.stderr and "edit.true_cfg_scale: was 4.0, now 2.5" in done.stderr
    assert "--restart edit" in done.stderr and not venv.exists()


TORCHRUN_SUMMARY = """edit_stage FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-22_23:15:45
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 143 (pid: 3853)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-22_23:15:44
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 3854)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 3854
============================================================
"""


def test_a_rank_killed_by_a_signal_is_named_from_torchruns_summary():
    assert _root_cause("noise\n" + TORCHRUN_SUMMARY) == (
        "\n--- rank 1: exit code -9 (pid: 3854) (SIGKILL): Signal 9 (SIGKILL) received by PID 3854")
    assert _root_cause("no summary at all") == "; see its output above"

"""The launcher: the whole demo end to end with both environments, a failing stage, and early config errors."""

import json
import os
import re
import shutil
import time

import pytest

from conftest import DEMO_CONFIG, DEMO_DATASET, REPO, base_python, copy_run, run_module, write_config
from launch.stages import _root_cause
from shards.dataset import load_dataset
from shards.manifest import read_manifest
from shards.store import verify_shards

pytestmark = pytest.mark.slow
FIVE = ["物理", "环境", "社会", "因果", "指代"]


def launch(args, timeout=1800):
    return run_module(base_python(), ["-m", "launch", *args], timeout=timeout)


def test_demo_end_to_end(demo_launch, tmp_path):
    _, out, done = demo_launch                      # python3 -m launch --config configs/demo.yaml, run once
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
    low, high = report["overall"]["mean_over_samples_ci95"]
    assert low <= report["overall"]["mean_over_samples"] <= high and "| 95% CI |" in output
    assert report["human_agreement"]["overall"]["n"] == 10 and "## Agreement with human ratings" in output
    record = report["record"]
    assert record["editor"]["fingerprint"] and record["judge"]["fingerprint"] and record["tool"]["score"]["git_commit"]
    assert record["environments"]["edit"]["diffusers"] == "0.39.0" and "transformers" in record["environments"]["score"]
    assert all(len(d["system_prompt_sha256"]) == 64 for c in record["judging"]["prompts"].values()
               for d in c["dimensions"].values())
    assert f"[launch] report: {out}/report.html" in output and f"[launch] data: {out}/report.json" in output

    out = copy_run(out, str(tmp_path / "demo"))      # the shared run stays as it was
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


@pytest.mark.parametrize("rdzv_id", ["../escape", "a/b", ".hidden", ""])
def test_a_rendezvous_id_that_is_no_plain_name_is_refused_before_anything_is_written(tmp_path, rdzv_id):
    # The id names folders inside the output folder: "../escape" once wrote the roll call outside it.
    out = tmp_path / "o"
    done = launch(["--config", DEMO_CONFIG, "--output-dir", str(out), "--nnodes", "2", "--node-rank", "0",
                   "--rdzv-endpoint", "localhost:29999", "--rdzv-id", rdzv_id], timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--rdzv-id {rdzv_id!r}: use 1 to 64 letters" in done.stderr
    assert not out.exists() and not (tmp_path / "escape").exists()


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


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)


def test_a_stage_restart_in_a_folder_without_a_run_removes_nothing(pythons, tmp_path):
    out = tmp_path / "mine"
    (out / "shards").mkdir(parents=True)
    for name in ("shards/keep.txt", "report.md", "results.csv"):
        (out / name).write_text("the user's own file")
    done = run_module(pythons["edit"], ["-m", "edit_stage", "--config", DEMO_CONFIG, "--output-dir", str(out),
                                        "--limit", "1", "--restart"], timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "holds no run of this tool" in done.stderr and "shards/keep.txt" in done.stderr
    assert _files(out) == ["report.md", "results.csv", "shards/keep.txt"]


def test_a_launcher_restart_from_the_repository_root_keeps_the_projects_own_shards_package(pythons, tmp_path):
    import subprocess

    copy = tmp_path / "repo"                                  # the project's tracked files, as a clone has them
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        os.makedirs(os.path.dirname(copy / name), exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), copy / name)
    config = write_config(copy, {"edit.env": {"python": pythons["edit"]}, "score.env": {"python": pythons["score"]}})
    before = _files(copy / "shards")
    done = subprocess.run([base_python(), "-m", "launch", "--config", config, "--output-dir", ".", "--restart",
                           "--limit", "1", "--nproc-per-node", "1"], cwd=copy, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(copy)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "holds no run of this tool" in done.stderr and "shards/config.py" in done.stderr
    assert _files(copy / "shards") == before


def _alive_with(text: str) -> list[str]:
    """Command lines of running processes that mention `text`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if text in cmdline and not zombie:
            found.append(cmdline)
    return found


def test_sigterm_to_the_launcher_stops_its_stages_and_the_work_stays_resumable(pythons, tmp_path):
    import signal
    import subprocess

    out = str(tmp_path / "run")
    proc = subprocess.Popen([base_python(), "-m", "launch", "--config", DEMO_CONFIG, "--output-dir", out,
                             "--limit", "4"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:                                  # until the first image is edited
        seen.append(line)
        if re.search(r"\] edited \S+ in ", line):
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == 143, output
    assert "stopped by SIGTERM" in output
    deadline = time.monotonic() + 10
    while _alive_with(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive_with(out) == []                             # torchrun and every rank are gone with it
    again = launch(["--config", DEMO_CONFIG, "--output-dir", out, "--limit", "4"])
    assert again.returncode == 0, again.stdout + again.stderr
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        ids = [s["id"] for s in json.load(f)["samples"]]
    assert sorted(ids) == sorted(s.id for s in load_dataset(DEMO_DATASET)[:4])


def test_preparing_the_environments_ignores_what_the_output_folder_holds(pythons, tmp_path):
    # The README's test command prepares with the demo's config: an output folder left by another version's demo
    # run (or anything else there) must not stop it, as it stops a run.
    out = tmp_path / "old-demo"
    (out / "progress").mkdir(parents=True)
    (out / "progress" / "edit.json").write_text("not a record of this tool", encoding="utf-8")
    command = ["-m", "launch", "--config", DEMO_CONFIG, "--output-dir", str(out)]
    prepared = run_module(base_python(), command + ["--prepare-only"], timeout=600)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    refused = run_module(base_python(), command + ["--limit", "1"], timeout=600)
    assert refused.returncode == 2 and "edit.json" in refused.stderr, refused.stderr

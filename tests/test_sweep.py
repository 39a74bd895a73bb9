"""A sweep of tiny LoRA checkpoints through the launcher on 2 ranks: the editor and the judge loaded once per rank,
each checkpoint's images those of a single run of it, kill -9 mid-sweep and a rerun that completes it with every
(checkpoint, sample) once, and a checkpoint added later the only one done."""

import glob
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import REPO, absolute_demo_config, base_python, run_module, torchrun, write_config, write_lora_file
from shards.config import ConfigError, load_config
from shards.manifest import read_manifest
from shards.sweep import check_sweep_folder, sweep_runs

pytestmark = pytest.mark.slow

LIMIT = 3


def _lora(pythons, folder: str, seed: int) -> str:
    pipeline = absolute_demo_config()["edit"]["model"]
    done = run_module(pythons["edit"], ["-m", "edit_stage.tiny", "--output", folder, "--lora-for", pipeline,
                                        "--seed", str(seed)])
    assert done.returncode == 0, done.stderr
    return folder


def _launch(config: str, out: str) -> list[str]:
    return [base_python(), "-m", "launch", "--config", config, "--output-dir", out, "--limit", str(LIMIT)]


def _rank_lines(out: str, stage: str, text: str) -> dict[str, int]:
    """How often each rank's log of `stage` says `text`."""
    counts = {}
    for path in sorted(glob.glob(os.path.join(out, "logs", f"{stage}-r*.log"))):
        with open(path, encoding="utf-8") as f:
            counts[os.path.basename(path)] = sum(text in line for line in f)
    return counts


def _parts_closed(out: str, name: str) -> bool:
    """Whether a shard part of the run `name` is recorded in an edit journal (a non-empty journal)."""
    return any(os.path.getsize(p) for p in glob.glob(os.path.join(out, name, "progress", "edit-*.jsonl")))


def _attempts(out: str, name: str, stage: str) -> list[dict]:
    with open(os.path.join(out, name, "progress", f"{stage}.json"), encoding="utf-8") as f:
        return json.load(f)["attempts"]


@pytest.fixture(scope="module")
def sweep(pythons, tmp_path_factory):
    """(config, output folder, checkpoints folder) of a sweep of the base and 3 LoRA checkpoints, killed with -9
    mid-edit once and run again to the end."""
    root = tmp_path_factory.mktemp("sweep")
    ckpt = root / "ckpt"
    for seed, step in ((1, 100), (2, 200), (3, 1000)):
        _lora(pythons, str(ckpt / f"step-{step}"), seed)
    config = write_config(root, {"sweep": {"checkpoints": [{"lora": str(ckpt / "step-*")}]}})
    out = str(root / "out")
    first = subprocess.Popen(_launch(config, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": REPO})
    deadline = time.monotonic() + 900
    while not _parts_closed(out, "step-100"):               # killed once a checkpoint's first part is recorded
        assert first.poll() is None and time.monotonic() < deadline, "the sweep ended before it was killed"
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = run_module(base_python(), _launch(config, out)[1:], timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return config, out, str(ckpt), done


def test_a_sweep_killed_mid_edit_completes_with_every_checkpoint_and_sample_once(sweep):
    config, out, _, done = sweep
    names = ["base", "step-100", "step-200", "step-1000"]
    assert sorted(os.listdir(out)) == sorted(names + ["logs", "sweep.html", "sweep.json", "sweep.md"]), \
        os.listdir(out)
    for name in names:
        ids = [s["id"] for s in read_manifest(os.path.join(out, name))["samples"]]
        assert len(ids) == LIMIT == len(set(ids)), (name, ids)
        with open(os.path.join(out, name, "report.json"), encoding="utf-8") as f:
            judged = [s["id"] for s in json.load(f)["samples"]]
        assert sorted(judged) == sorted(ids), (name, judged)
    assert _attempts(out, "step-100", "edit")[-1]["done_before"] >= 1      # the rerun kept what the first closed
    with open(os.path.join(out, "sweep.json"), encoding="utf-8") as f:     # in training-step order
        assert [c["name"] for c in json.load(f)["checkpoints"]] == names


def test_the_editor_and_the_judge_are_loaded_once_per_rank_for_the_whole_sweep(sweep):
    _, out, _, _ = sweep
    for name in ("base", "step-100", "step-200", "step-1000"):
        ranks = _attempts(out, name, "edit")[-1]["ranks"]
        assert all(r["editor_loads"] in (None, 1) for r in ranks), ranks
    # The rerun's own rank logs (each launch appends to them): the last launch loaded each model once per rank.
    last = _attempts(out, "step-1000", "edit")[-1]["ranks"]
    assert [r["editor_loads"] for r in last] == [1, 1], last
    judge = _rank_lines(out, "score", "loaded the judge")
    assert judge == {"score-r00000.log": 1, "score-r00001.log": 1}, judge


def test_a_checkpoints_images_equal_a_single_run_of_it(pythons, sweep, tmp_path):
    config, out, ckpt, _ = sweep
    (run,) = [r for r in sweep_runs(load_config(config)) if r.name == "step-200"]
    single = str(tmp_path / "single")
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", run.config.source, "--output-dir", single,
                                                       "--limit", str(LIMIT), "--set", "sweep=null",
                                                       "--set", f"edit.lora=[{{path: {ckpt}/step-200}}]",
                                                       "--set", "edit.fuse_lora=false"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pixels = {s["id"]: s["sha256"] for s in read_manifest(single)["samples"]}
    swept = {s["id"]: s["sha256"] for s in read_manifest(os.path.join(out, "step-200"))["samples"]}
    assert swept == pixels                                  # bit for bit: the adapters are swapped, never fused
    base = {s["id"]: s["sha256"] for s in read_manifest(os.path.join(out, "base"))["samples"]}
    assert all(base[i] != swept[i] for i in swept)          # and the adapter did change them


def test_a_checkpoint_added_later_is_the_only_one_done(pythons, sweep, tmp_path):
    config, out, ckpt, _ = sweep
    _lora(pythons, os.path.join(ckpt, "step-2000"), 4)
    before = {n: len(_attempts(out, n, "score")) for n in ("base", "step-100", "step-200", "step-1000")}
    done = run_module(base_python(), _launch(config, out)[1:], timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    edit = _attempts(out, "step-2000", "edit")
    assert len(edit) == 1 and edit[0]["to_do"] == LIMIT
    for name, count in before.items():
        assert _attempts(out, name, "edit")[-1]["to_do"] == 0                    # nothing edited again
        assert _attempts(out, name, "score")[-1]["to_do"] == 0 or len(_attempts(out, name, "score")) == count
    with open(os.path.join(out, "sweep.json"), encoding="utf-8") as f:
        assert [c["name"] for c in json.load(f)["checkpoints"]][-1] == "step-2000"


def test_sweep_names_are_refused_when_they_cannot_be_folders_or_collide(tmp_path):
    (tmp_path / "a").mkdir()
    write_lora_file(tmp_path / "a" / "x.safetensors")
    (tmp_path / "b").mkdir()
    write_lora_file(tmp_path / "b" / "x.safetensors")
    cases = {
        "two checkpoints are named 'x'": [{"lora": str(tmp_path / "*" / "x.safetensors")}],
        "matches nothing": [{"lora": str(tmp_path / "none-*")}],
        "is a file or folder the sweep's folder holds itself": [{"name": "logs", "lora": str(tmp_path / "a")}],
        "holds a path separator": [{"name": "up/down", "lora": str(tmp_path / "a")}],
        "give a `lora`, a `model`, an `editor` or `edit` settings": [{"name": "nothing"}],
        "two checkpoints are named 'base'": [{"name": "base", "lora": str(tmp_path / "a")}],
    }
    for message, checkpoints in cases.items():
        config = load_config(write_config(tmp_path, {"sweep": {"checkpoints": checkpoints}}))
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("`", ".")):
            sweep_runs(config)


def test_a_sweep_and_a_single_run_never_share_an_output_folder(tmp_path):
    lora = tmp_path / "a"
    lora.mkdir()
    write_lora_file(lora / "pytorch_lora_weights.safetensors")
    out = tmp_path / "out"
    (out / "progress").mkdir(parents=True)                           # a single run's folder
    swept = load_config(write_config(tmp_path, {"output_dir": str(out),
                                                "sweep": {"checkpoints": [{"lora": str(lora)}]}}))
    with pytest.raises(ConfigError, match="holds a single run's work"):
        check_sweep_folder(swept)
    os.rmdir(out / "progress")
    (out / "a" / "progress").mkdir(parents=True)                     # a sweep's folder
    with pytest.raises(ConfigError, match=r"holds a sweep \(the runs a\)"):
        check_sweep_folder(load_config(write_config(tmp_path, {"output_dir": str(out)})))
    check_sweep_folder(swept)                                        # the sweep itself resumes there


def test_three_editors_compared_in_one_launch_each_in_its_environment(tmp_path):
    """configs/demo-compare-editors.yaml: the tiny Qwen-Image-Edit-2511 (.envs/edit), Qwen-Image-2.1 and FLUX.1
    Kontext (.envs/edit-tf5, one edit job for both) and one judge, through the launcher."""
    out = str(tmp_path / "editors")
    done = run_module(base_python(), ["-m", "launch", "--config", os.path.join(REPO, "configs",
                                      "demo-compare-editors.yaml"), "--output-dir", out, "--limit", "2"], timeout=2400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = ["qwen-image-edit-2511", "qwen-image-2.1", "flux.1-kontext-dev"]
    editors = {n: read_manifest(os.path.join(out, n))["config"]["edit"]["pipeline"] for n in names}
    assert editors == dict(zip(names, ["QwenImageEditPlusPipeline", "QwenImage21Pipeline", "FluxKontextPipeline"]))
    assert done.stdout.count("[launch] edit stage: ") == 2                  # .envs/edit, then .envs/edit-tf5
    # In the edit-tf5 job a rank loads each editor it edits with once: Qwen-Image-2.1, then FLUX afresh.
    qwen21, flux = (_attempts(out, n, "edit")[-1]["ranks"] for n in names[1:])
    for a, b in zip(qwen21, flux):
        assert b["editor_loads"] == (a["samples"] > 0) + (b["samples"] > 0), (a, b)
    judge = _rank_lines(out, "score", "loaded the judge")
    assert judge == {"score-r00000.log": 1, "score-r00001.log": 1}, judge
    with open(os.path.join(out, "sweep.json"), encoding="utf-8") as f:     # the base first, then natural order
        assert [c["name"] for c in json.load(f)["checkpoints"]] == [names[0], names[2], names[1]]

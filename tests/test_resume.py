"""Run identity: a folder of another run is refused with every difference named; --restart removes the right files."""

import os
import shutil

import pytest

from conftest import DEMO_CONFIG, write_config
from shards.config import load_config
from shards.resume import (ResumeError, begin_attempt, check_identity, end_attempt, model_fingerprint, read_record,
                           restart, run_identity)


def _started(tmp_path, stage="edit", changes=None):
    config = load_config(write_config(tmp_path, changes))
    out = str(tmp_path / "out")
    begin_attempt(out, stage, run_identity(config, stage), world_size=2)
    return out


def test_the_same_run_resumes_and_operational_settings_may_change(tmp_path):
    out = _started(tmp_path)
    changed = load_config(write_config(tmp_path, {"edit.samples_per_shard": 7, "distributed.nproc_per_node": 3,
                                                  "dataset.limit": 2, "edit.env": {"python": "/usr/bin/python3"}}))
    check_identity(out, "edit", run_identity(changed, "edit"))          # does not raise


def test_a_changed_setting_is_named_with_both_values(tmp_path):
    out = _started(tmp_path)
    changed = load_config(write_config(tmp_path, {"edit.num_inference_steps": 40, "edit.seed": 3}))
    with pytest.raises(ResumeError) as info:
        check_identity(out, "edit", run_identity(changed, "edit"))
    message = str(info.value)
    assert f"{out} holds edit work of a different run" in message
    assert "edit.num_inference_steps: was 2, now 40" in message and "edit.seed: was 0, now 3" in message
    assert "--restart" in message


def test_a_changed_dataset_file_is_named(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(os.path.dirname(DEMO_CONFIG), "..", "demo", "data"), data)
    out = _started(tmp_path, changes={"dataset.path": str(data / "benchmark.jsonl")})
    with open(data / "benchmark.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    changed = load_config(write_config(tmp_path, {"dataset.path": str(data / "benchmark.jsonl")}))
    with pytest.raises(ResumeError, match="dataset file sha256: was"):
        check_identity(out, "edit", run_identity(changed, "edit"))


def test_a_changed_judge_prompt_is_named_for_the_score_stage_only(tmp_path):
    out = _started(tmp_path, stage="score")
    changed = load_config(write_config(tmp_path, {"score.prompts.环境.dimensions.score.system_prompt": "Be harsh."}))
    with pytest.raises(ResumeError, match="score.prompts: was"):
        check_identity(out, "score", run_identity(changed, "score"))
    check_identity(out, "edit", run_identity(changed, "edit"))          # the edit stage never started here


def test_a_model_folder_replaced_by_another_is_noticed(tmp_path):
    model = tmp_path / "model"
    (model / "vae").mkdir(parents=True)
    (model / "model_index.json").write_text('{"_class_name": "X"}')
    (model / "vae" / "weights.safetensors").write_bytes(b"\0" * 10)
    before = model_fingerprint(str(model))
    (model / ".tmp-staging").mkdir()                                    # a builder's hidden staging folder
    assert model_fingerprint(str(model)) == before
    (model / "vae" / "weights.safetensors").write_bytes(b"\0" * 11)
    assert model_fingerprint(str(model)) != before
    assert model_fingerprint("Qwen/Qwen-Image-Edit-2511") is None       # a hub id: nothing on disk to read


def test_a_model_folder_built_on_first_use_is_recorded_once_it_exists(tmp_path):
    model = tmp_path / "tiny"                                           # what build_tiny makes on first use
    config = load_config(write_config(tmp_path, {"score.model": str(model), "score.build_tiny": True}))
    out = str(tmp_path / "out")
    before_build = run_identity(config, "score")
    assert before_build["score.model files fingerprint"] is None
    check_identity(out, "score", before_build)                          # first run: nothing recorded yet
    model.mkdir()
    (model / "config.json").write_text("{}")
    begin_attempt(out, "score", run_identity(config, "score"), world_size=1)   # recorded after the build
    check_identity(out, "score", run_identity(config, "score"))         # the rerun resumes
    begin_attempt(str(tmp_path / "early"), "score", before_build, world_size=1)
    check_identity(str(tmp_path / "early"), "score", run_identity(config, "score"))  # unknown differs from nothing
    begin_attempt(str(tmp_path / "early"), "score", run_identity(config, "score"), world_size=1)
    (model / "config.json").write_text('{"changed": true}')
    with pytest.raises(ResumeError, match="score.model files fingerprint: was"):
        check_identity(str(tmp_path / "early"), "score", run_identity(config, "score"))


def _touch(out, *names):
    for name in names:
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


def test_restarting_the_score_stage_keeps_the_edits(tmp_path):
    out = str(tmp_path)
    edits = ["manifest.json", "shards/edit-r00000-of-00001-p0000.safetensors", "progress/edit.json",
             "progress/edit-r00000-of-00001.jsonl"]
    scores = ["report.json", "report.md", "results.csv", "progress/score.json", "progress/score-r00000-of-00002.jsonl"]
    _touch(out, *edits, *scores, "logs/score-r00000.log")
    assert sorted(restart(out, "score")) == sorted(scores)
    assert all(os.path.exists(os.path.join(out, p)) for p in edits + ["logs/score-r00000.log"])


def test_restarting_the_edit_stage_removes_the_scores_too(tmp_path):
    out = str(tmp_path)
    _touch(out, "manifest.json", "shards/edit-r00000-of-00001-p0000.safetensors", "progress/edit-r00000-of-00001.jsonl",
           "report.json", "progress/score-r00000-of-00001.jsonl", "logs/edit-r00000.log")
    removed = restart(out, "edit")
    assert {"shards", "manifest.json", "report.json", "progress/score-r00000-of-00001.jsonl"} <= set(removed)
    assert sorted(os.listdir(out)) == ["logs", "progress"] and os.listdir(os.path.join(out, "progress")) == []


def test_attempts_are_recorded_in_order(tmp_path):
    out = _started(tmp_path)
    end_attempt(out, "edit", edited=3, elapsed_s=1.5)
    begin_attempt(out, "edit", {"ignored": "the first identity stays"}, world_size=3)
    attempts = end_attempt(out, "edit", edited=2)
    assert [(a["world_size"], a["edited"]) for a in attempts] == [(2, 3), (3, 2)]
    assert "ignored" not in read_record(out, "edit")["identity"]


def test_an_unreadable_record_is_refused_with_a_way_out(tmp_path):
    _touch(str(tmp_path), "progress/edit.json")
    with pytest.raises(ResumeError, match="not valid JSON.*--restart"):
        check_identity(str(tmp_path), "edit", {})

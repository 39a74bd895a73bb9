"""Run identity: a folder of another run is refused with every difference named; --restart removes the right files."""

import os
import shutil

import pytest
import torch

from conftest import DEMO_CONFIG, write_config
from shards.config import load_config
from shards.folder.identity import check_identity, model_fingerprint, run_identity
from shards.folder.records import ResumeError, begin_attempt, end_attempt, read_record, restart


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
    (note,) = check_identity(str(tmp_path / "early"), "score", run_identity(config, "score"))
    assert note.startswith(f"score.model files fingerprint ({model}): not compared, it could not be computed when "
                           "the run started")
    begin_attempt(str(tmp_path / "early"), "score", run_identity(config, "score"), world_size=1)
    (model / "config.json").write_text('{"changed": true}')
    with pytest.raises(ResumeError, match=r"score.model files fingerprint \(.*/tiny\): was"):
        check_identity(str(tmp_path / "early"), "score", run_identity(config, "score"))


def _touch(out, *names):
    for name in names:
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


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


# --- What a restart may remove: only what the tool wrote, as its records say. ---

def _files(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, files in os.walk(out) for f in files)


def _real_run(out):
    """A folder as both stages leave it: records, journals, two shard parts, manifest and report files."""
    from examples import manifest_data
    from shards.manifest import write_manifest
    from shards.store import ShardWriter

    begin_attempt(out, "edit", {"edit.seed": 0}, world_size=1)
    with ShardWriter(out, rank=0, world_size=1, per_shard=1) as writer:
        for i in range(2):
            writer.add({"id": f"s{i}"}, torch.zeros(2, 2, 3, dtype=torch.uint8))
    end_attempt(out, "edit", outputs=["manifest.json"])
    write_manifest(out, manifest_data(writer.parts, []))
    begin_attempt(out, "score", {"score.mode": "expected"}, world_size=1)
    _touch(out, "progress/score-r00000-of-00001.jsonl")
    end_attempt(out, "score", outputs=["report.json", "results.csv", "report.md", "report.html"])
    _touch(out, "report.json", "results.csv", "report.md", "report.html", "logs/edit-r00000.log")


def test_a_restart_refuses_a_folder_that_holds_no_run_and_removes_nothing(tmp_path):
    out = str(tmp_path)
    _touch(out, "shards/keep.txt", "report.md", "results.csv")
    for stage in ("edit", "score"):
        with pytest.raises(ResumeError) as info:
            restart(out, stage)
        message = str(info.value)
        assert "holds no run of this tool" in message and "results.csv" in message and "nothing was removed" in message
    assert _files(out) == ["report.md", "results.csv", "shards/keep.txt"]


def test_a_restart_refuses_files_of_others_where_it_would_delete_and_removes_nothing(tmp_path):
    out = str(tmp_path)
    _real_run(out)
    _touch(out, "shards/keep.txt")
    before = _files(out)
    with pytest.raises(ResumeError, match=r"records do not account for.*shards/keep.txt.*nothing was removed"):
        restart(out, "edit")
    assert _files(out) == before


def test_a_restart_of_a_real_run_removes_exactly_what_the_tool_wrote(tmp_path):
    out = str(tmp_path)
    _real_run(out)
    # A part renamed into place but never recorded (killed in between), and a temporary file of a killed write.
    _touch(out, "shards/edit-r00000-of-00001-p0007.safetensors",
           "shards/edit-r00000-of-00001-p0008.safetensors.tmp-123-abcdef12", "report.json.tmp-99-0123abcd")
    edits = [f for f in _files(out) if f.startswith(("shards/", "manifest", "progress/edit"))]
    removed = restart(out, "score")
    assert sorted(removed) == ["progress/score-r00000-of-00001.jsonl", "progress/score.json", "report.html",
                               "report.json", "report.json.tmp-99-0123abcd", "report.md", "results.csv"]
    assert _files(out) == sorted(edits + ["logs/edit-r00000.log"])       # the edits are kept
    assert len(restart(out, "edit")) == len(edits)
    assert sorted(os.listdir(out)) == ["logs", "progress"] and os.listdir(os.path.join(out, "progress")) == []


# --- Null is a value like any other; only an uncomputable fingerprint may be absent. ---

@pytest.mark.parametrize("before, after", [(64, None), (None, 64)])
def test_a_setting_changed_to_or_from_null_is_refused(tmp_path, before, after):
    out = _started(tmp_path, changes={"edit.height": before, "edit.width": before})
    changed = load_config(write_config(tmp_path, {"edit.height": after, "edit.width": after}))
    with pytest.raises(ResumeError) as info:
        check_identity(out, "edit", run_identity(changed, "edit"))
    assert f"edit.height: was {'null' if before is None else before}, now {'null' if after is None else after}" \
        in str(info.value)


def test_a_recorded_null_setting_is_never_overwritten_by_a_later_attempt(tmp_path):
    out = _started(tmp_path, changes={"edit.height": None, "edit.width": None})
    changed = load_config(write_config(tmp_path, {"edit.height": 64, "edit.width": 64}))
    begin_attempt(out, "edit", run_identity(changed, "edit"), world_size=1)
    assert read_record(out, "edit")["identity"]["edit.height"] is None


# --- The weights themselves are fingerprinted. ---

def test_weights_replaced_by_same_size_weights_change_the_fingerprint(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    weights = model / "model.safetensors"
    weights.write_bytes(b"\1" * 4096)
    before = model_fingerprint(str(model))
    stat = os.stat(weights)
    weights.write_bytes(b"\2" * 4096)                                    # same size, other content
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))          # even with the old modification time
    assert model_fingerprint(str(model)) != before


def test_cached_digests_are_reused_and_a_rewritten_file_is_hashed_again(tmp_path, monkeypatch):
    import shards.folder.identity as identity

    model, cache = tmp_path / "model", str(tmp_path / "run" / "progress" / "model-digests.json")
    model.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (model / name).write_bytes(name.encode() * 1000)
    hashed = []
    real = identity.sha256_file
    monkeypatch.setattr(identity, "sha256_file", lambda path: hashed.append(os.path.basename(path)) or real(path))
    first = model_fingerprint(str(model), cache)
    assert sorted(hashed) == ["a.safetensors", "b.safetensors"] and first == model_fingerprint(str(model))
    hashed.clear()
    assert model_fingerprint(str(model), cache) == first and hashed == []      # nothing read again
    (model / "b.safetensors").write_bytes(b"B" * len("b.safetensors" * 1000))
    assert model_fingerprint(str(model), cache) != first and hashed == ["b.safetensors"]

"""Fault injection on the CPU demo: kill -9 of one rank mid-stage, then a resume on another world size; an exception
on one rank; torn journals; tampered shards; out of memory; a changed config. Each asserts the exact outcome."""

import json
import os
import re
import shutil
import time

import pytest
import torch

from conftest import DEMO_DATASET, base_python, copy_run, fault, run_module, torchrun, write_config
from shards.dataset import load_dataset
from shards.journal import journal_paths, read_journals
from shards.manifest import read_manifest
from shards.store import read_parts, verify_shards

pytestmark = pytest.mark.slow
ALL_IDS = [s.id for s in load_dataset(DEMO_DATASET)]
EDITED = re.compile(r"\[edit r(\d+)/\d+\] edited [^/\s]+/(\S+) in ")
JUDGED = re.compile(r"\[score r(\d+)/\d+\] [^/\s]+/(\S+) score=")


def _output(done) -> str:
    return done.stdout + done.stderr


def _by_rank(pattern: re.Pattern, output: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for rank, sample_id in pattern.findall(output):
        found.setdefault(int(rank), []).append(sample_id)
    return found


def _report(out: str) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _exactly_once(ids: list[str]) -> None:
    assert sorted(ids) == sorted(ALL_IDS) and len(ids) == len(set(ids))


def test_kill_9_of_a_rank_mid_edit_loses_only_its_open_part_and_resumes_on_3_ranks(pythons, demo_run, tmp_path):
    config, out = write_config(tmp_path, {"edit.samples_per_shard": 2}), str(tmp_path / "run")
    args = ["--config", config, "--output-dir", out]
    # Rank 1 is killed as it starts its 4th sample: 3 finished, 2 of them in a closed part, 1 in its open part.
    first = torchrun(pythons["edit"], "edit_stage", 2, args,
                     env=fault("edit_stage.pipeline:edit_sample", 1, "kill", call=4))
    assert first.returncode != 0 and "Signal 9 (SIGKILL)" in _output(first)
    finished = _by_rank(EDITED, _output(first))
    kept = {e["id"] for part in read_parts(out).records for e in part["samples"]}
    assert len(finished[1]) == 3
    assert set(finished[1]) - kept == {finished[1][2]}           # the killed rank's open part, nothing more
    assert set(finished.get(0, [])) <= kept                      # the SIGTERMed rank closed its open part

    second = torchrun(pythons["edit"], "edit_stage", 3, args)
    assert second.returncode == 0, _output(second)
    redone = [i for ids in _by_rank(EDITED, _output(second)).values() for i in ids]
    assert sorted(redone) == sorted(set(ALL_IDS) - kept)         # only what was not kept, each once
    manifest = read_manifest(out)
    _exactly_once([s["id"] for s in manifest["samples"]])
    assert [(a["world_size"], a["done_before"], a["to_do"]) for a in manifest["attempts"]] == [
        (2, 0, 10), (3, len(kept), 10 - len(kept))]
    verify_shards(out, manifest["shards"])
    # A resumed image is the image an uninterrupted run makes: seeds depend on the sample, not on the ranks.
    clean = {s["id"]: s["sha256"] for s in read_manifest(demo_run[1])["samples"]}
    assert {s["id"]: s["sha256"] for s in manifest["samples"]} == clean
    print(f"\nedit kill -9: finished before the kill {sum(map(len, finished.values()))}, kept {len(kept)}, "
          f"finished but redone {len(set(finished[1]) - kept)}, edited on resume {len(redone)}")


def test_kill_9_of_a_rank_mid_score_loses_no_recorded_judgement_and_resumes_on_1_rank(pythons, demo_run, tmp_path):
    config, out = demo_run[0], copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    args = ["--config", config, "--output-dir", out]
    # Rank 1 is killed as it starts its 2nd batch of 2 queries (which samples it had taken from the shared queue
    # depends on timing): what its 1st batch judged must be recorded.
    first = torchrun(pythons["score"], "score_stage", 2, args,
                     env=fault("score_stage.judges.in_process:InProcessJudge.ask", 1, "kill", call=2))
    assert first.returncode != 0 and "Signal 9 (SIGKILL)" in _output(first)
    logged = _by_rank(JUDGED, _output(first))
    recorded = [r["id"] for r in read_journals(journal_paths(out, "score")).records]
    assert logged[1] and set(logged[1]) <= set(recorded)
    assert set(i for ids in logged.values() for i in ids) <= set(recorded)   # every judgement shown was kept

    second = torchrun(pythons["score"], "score_stage", 1, args)
    assert second.returncode == 0, _output(second)
    rejudged = _by_rank(JUDGED, _output(second)).get(0, [])
    assert sorted(rejudged) == sorted(set(ALL_IDS) - set(recorded))
    report = _report(out)
    _exactly_once([s["id"] for s in report["samples"]])
    assert [(a["world_size"], a["done_before"], a["to_do"]) for a in report["attempts"]["score"]] == [
        (2, 0, 10), (1, len(recorded), 10 - len(recorded))]
    print(f"\nscore kill -9: judged and recorded before the kill {len(recorded)}, judged on resume {len(rejudged)}")


def test_a_torn_results_line_is_judged_again_and_nothing_else(pythons, demo_run, tmp_path):
    config, out = demo_run[0], copy_run(demo_run[1], str(tmp_path / "run"))
    journal = journal_paths(out, "score")[0]
    with open(journal, "rb") as f:
        data = f.read()
    torn_id = json.loads(data.splitlines()[-1])["id"]
    with open(journal, "wb") as f:
        f.write(data[:-25])                                       # a write cut short by a crash
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", out])
    assert done.returncode == 0, _output(done)
    assert "torn last line: that sample is judged again" in _output(done)
    assert [i for ids in _by_rank(JUDGED, _output(done)).values() for i in ids] == [torn_id]
    _exactly_once([s["id"] for s in _report(out)["samples"]])


def _flip_last_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))


def test_a_part_with_a_flipped_byte_is_not_trusted_on_resume_and_its_samples_are_edited_again(
        pythons, demo_run, tmp_path):
    config, out = demo_run[0], copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    part = read_parts(out).records[0]
    _flip_last_byte(os.path.join(out, part["path"]))
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", config, "--output-dir", out])
    assert done.returncode == 0, _output(done)
    assert f"not trusting shard {part['path']} does not match its checksum" in _output(done)
    redone = [i for ids in _by_rank(EDITED, _output(done)).values() for i in ids]
    assert sorted(redone) == sorted(e["id"] for e in part["samples"])
    manifest = read_manifest(out)
    assert part["path"] not in {s["path"] for s in manifest["shards"]}
    verify_shards(out, manifest["shards"])
    assert [s["sha256"] for s in manifest["samples"]] == [s["sha256"] for s in read_manifest(demo_run[1])["samples"]]


@pytest.mark.parametrize("damage", ["flipped byte", "missing"])
def test_the_score_stage_names_a_damaged_shard_and_judges_nothing(pythons, demo_run, tmp_path, damage):
    config, out = demo_run[0], copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    shard = read_manifest(out)["shards"][-1]["path"]
    if damage == "missing":
        os.remove(os.path.join(out, shard))
    else:
        _flip_last_byte(os.path.join(out, shard))
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", out])
    output = _output(done)
    assert done.returncode != 0
    expected = "is missing" if damage == "missing" else "does not match its checksum"
    assert f"error: shard {shard} {expected}" in output and "nothing was judged" in output
    assert output.count(f"error: shard {shard}") == 1                  # one message, from rank 0
    assert " score=" not in output and journal_paths(out, "score") == []
    assert not os.path.exists(os.path.join(out, "report.json"))


def test_an_exception_on_rank_1_ends_the_job_within_seconds_naming_stage_rank_and_traceback(pythons, tmp_path):
    # Collectives may wait 30 minutes: the job must end because the rank failed, not because a collective timed out.
    config = write_config(tmp_path, {"distributed.timeout_s": 1800})
    start = time.time()
    done = run_module(base_python(), ["-m", "launch", "--config", config, "--output-dir", str(tmp_path / "o")],
                      timeout=600, env=fault("edit_stage.pipeline:edit_sample", 1, "raise", call=2))
    end = time.time()
    assert done.returncode == 1
    assert "[launch] error: edit stage failed (exit status 1)" in done.stderr
    assert "--- rank 1: RuntimeError: injected fault in edit_stage.pipeline:edit_sample on rank 1, call 2" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr and "edit_stage/cli.py" in done.stderr
    assert "score stage:" not in done.stdout
    (error_file,) = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "o" / "logs") for f in files
                     if f == "error.json"]
    with open(error_file, encoding="utf-8") as f:
        raised_at = json.load(f)["message"]["extraInfo"]["timestamp"]
    assert end - int(raised_at) < 30
    print(f"\nrank 1 raised; launcher exited {end - int(raised_at):.1f} s later (whole run {end - start:.1f} s)")


def test_a_score_batch_out_of_memory_is_retried_at_half_size(pythons, demo_run, tmp_path):
    config, out = demo_run[0], copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", out],
                    env=fault("score_stage.judges.in_process:InProcessJudge.ask", 0, "oom", batch_arg=1, max_batch=1))
    assert done.returncode == 0, _output(done)
    assert "[score r0/2] out of GPU memory judging 2 queries at once; retrying with batch size 1" in _output(done)
    _exactly_once([s["id"] for s in _report(out)["samples"]])


def test_a_changed_judge_config_is_refused_and_restart_starts_the_scores_over(pythons, demo_run, tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"))
    with open(os.path.join(out, "report.json"), "rb") as f:
        report_before = f.read()
    changed = write_config(tmp_path, {"score.max_new_tokens": 5})
    refused = torchrun(pythons["score"], "score_stage", 2, ["--config", changed, "--output-dir", out])
    assert refused.returncode != 0
    assert "holds score work of a different run" in _output(refused)
    assert "score.max_new_tokens: was 12, now 5" in _output(refused)
    with open(os.path.join(out, "report.json"), "rb") as f:
        assert f.read() == report_before                          # nothing of the old run was touched

    again = torchrun(pythons["score"], "score_stage", 2, ["--config", changed, "--output-dir", out, "--restart"])
    assert again.returncode == 0, _output(again)
    assert "10 to judge" in _output(again)
    report = _report(out)
    assert len(report["attempts"]["score"]) == 1 and report["config"]["score"]["max_new_tokens"] == 5
    assert len(report["attempts"]["edit"]) == 1                   # the edits were kept


def test_a_refusal_is_reported_once_even_when_another_rank_fails_first(pythons, demo_run, tmp_path):
    # Every rank refuses the changed run; rank 0, the one that reports, is made the slowest to get there.
    out = copy_run(demo_run[1], str(tmp_path / "run"))
    changed = write_config(tmp_path, {"score.max_new_tokens": 5})
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", changed, "--output-dir", out],
                    env=fault("shards.folder.records:check_identity", 0, "delay", call=1, seconds=2, stage="score_stage"))
    assert done.returncode != 0
    assert _output(done).count("holds score work of a different run") == 1


def _damaged_dataset(tmp_path) -> str:
    """The demo dataset with env-01's image cut in half and soc-01's image deleted."""
    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(DEMO_DATASET), data)
    image = data / "images" / "env-01.png"
    image.write_bytes(image.read_bytes()[:200])
    (data / "images" / "soc-01.png").unlink()
    return str(data / "benchmark.jsonl")


def test_a_corrupt_image_is_refused_before_any_model_loads(pythons, tmp_path):
    missing_model = str(tmp_path / "no-such-model")
    config = write_config(tmp_path, {"dataset.path": _damaged_dataset(tmp_path), "edit.model": missing_model,
                                     "edit.build_tiny": False})
    start = time.monotonic()
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", config, "--output-dir", str(tmp_path / "o")])
    output = _output(done)
    assert done.returncode != 0
    assert "sample 'env-01': cannot decode image images/env-01.png" in output
    assert "sample 'soc-01': image file not found" in output and "skip_unreadable_images" in output
    assert "no-such-model" not in output                           # it never got as far as loading the model
    assert not os.path.exists(tmp_path / "o" / "progress")
    assert time.monotonic() - start < 60


def test_skipped_unreadable_images_are_failed_in_the_report_never_dropped(pythons, tmp_path):
    config = write_config(tmp_path, {"dataset.path": _damaged_dataset(tmp_path),
                                     "dataset.skip_unreadable_images": True})
    out = str(tmp_path / "o")
    done = run_module(base_python(), ["-m", "launch", "--config", config, "--output-dir", out,
                                      "--categories", "环境", "社会"], timeout=900)
    assert done.returncode == 0, _output(done)
    report = _report(out)
    assert [s["id"] for s in report["samples"]] == ["env-01", "env-02", "soc-01", "soc-02"]
    failed = {s["id"]: s for s in report["samples"] if s["status"] == "failed"}
    assert set(failed) == {"env-01", "soc-01"} and failed["env-01"]["score"] is None
    assert failed["env-01"]["reason"].startswith("cannot decode image images/env-01.png")
    assert failed["soc-01"]["reason"].startswith("image file not found")
    assert report["overall"]["failed"] == 2 and report["overall"]["count"] == 4
    assert report["categories"]["环境"]["failed"] == 1 and report["categories"]["社会"]["failed"] == 1
    assert "Failed (2): env-01 (cannot decode image" in _output(done)


def test_a_resume_after_the_judges_weights_were_replaced_by_same_size_weights_is_refused(pythons, demo_run, tmp_path):
    from safetensors.torch import load_file, save_file

    judge = shutil.copytree(_report(demo_run[1])["config"]["score"]["model"], tmp_path / "judge")
    config = write_config(tmp_path, {"score.model": str(judge), "score.build_tiny": False})
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    args = ["--config", config, "--output-dir", out]
    # Killed after its first judgement: the resume must not add nine judgements of other weights to it.
    first = torchrun(pythons["score"], "score_stage", 1, args,
                     env=fault("score_stage.judges.in_process:InProcessJudge.ask", 0, "kill", call=2))
    assert first.returncode != 0 and len(read_journals(journal_paths(out, "score")).records) == 1
    (weights,) = [os.path.join(d, f) for d, _, files in os.walk(judge) for f in files if f.endswith(".safetensors")]
    size, tensors = os.path.getsize(weights), load_file(weights)
    generator = torch.Generator().manual_seed(1)
    save_file({k: torch.randn(t.shape, generator=generator).to(t.dtype) for k, t in tensors.items()}, weights,
              metadata={"format": "pt"})
    assert os.path.getsize(weights) == size                         # the same shapes: the same file size
    resumed = torchrun(pythons["score"], "score_stage", 1, args)
    assert resumed.returncode != 0
    assert "holds score work of a different run" in _output(resumed)
    assert f"score.model files fingerprint ({judge}): was" in _output(resumed)
    assert len(read_journals(journal_paths(out, "score")).records) == 1   # nothing judged by the other weights

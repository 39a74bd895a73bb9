"""The files the tool writes for another process or a later run (manifest, report, run records) have one typed,
documented definition each: written and read through it, with a schema_version that readers hold to."""

import ast
import copy
import dataclasses
import inspect
import json
import logging
import os
import shutil
import types

import pytest

from conftest import base_python, run_module, torchrun
from examples import RECORD, RUN, failed_entry, manifest_data, sample_entry
from shards.folder.records import ResumeError, begin_attempt, read_record, record_path
from shards.manifest import Manifest, read_manifest, write_manifest
from shards.report.schema import Report
from shards.store import ShardError
from shards.typed_data import SchemaError


def _result(sample_id, category, score, status="ok"):
    return {"id": sample_id, "category": category, "instruction": f"do {sample_id}", "image_sha256": "e" * 64,
            "score": score, "status": status, "dimensions": {"score": {"score": score, "distribution": [0.0] * 11,
                                                                       "valid_mass": 0.9}},
            "response": None, "rank": 0, "world_size": 1, "judge_seconds": 0.1, "original_sha256": "o" * 64}


def _report_data():
    """A complete report, as `score_stage.outputs` assembles it, before `write_report` adds its schema_version."""
    from score_stage.report import build_report

    failed = {"id": "f", "category": "y", "instruction": "do f", "score": None, "status": "failed",
              "dimensions": {}, "response": None, "reason": "cannot decode image f.png"}
    results = [_result("a", "x", 6.5), _result("b", "y", 3.0), failed]
    record = {**RECORD, "judge": {"model": "tiny/judge", "revision": None, "fingerprint": "f"},
              "dataset": {"path": "/data/b.jsonl", "sha256": "d" * 64}}
    return build_report(results, ["x", "y"], human_scores={"a": 7.0, "b": 2.0}, edit_model="tiny/editor",
                        judge_model="tiny/judge", scoring_mode="expected", record=copy.deepcopy(record),
                        **copy.deepcopy(RUN))


def test_the_report_is_written_through_its_definition_and_read_back_exactly(tmp_path):
    from score_stage.report import write_report

    data = _report_data()
    paths = write_report(str(tmp_path), copy.deepcopy(data), thumbnails={})
    written = json.loads(open(paths["json"], encoding="utf-8").read())
    assert written == {"schema_version": 1, **data}
    assert "image_sha256" not in written["samples"][2] and "reason" not in written["samples"][0]  # optional keys
    assert Report.from_json(written, paths["json"]).to_json() == written


def test_the_score_stage_writes_no_report_its_readers_would_refuse(tmp_path):
    from score_stage.report import write_report

    data = _report_data()
    data["samples"][0]["score"] = 11.0                                 # off the judge's scale
    with pytest.raises(SchemaError, match=r"report.json: samples\[0\].score: expected a number from 0 to 10 for "
                                          "a scored sample, got 11.0"):
        write_report(str(tmp_path), data, thumbnails={})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("version, found", [(None, "has no schema_version: it was written by an earlier version"),
                                            (2, "has schema_version 2: it was written by another version")])
def test_compare_refuses_a_report_of_another_version_saying_how_to_rewrite_it(tmp_path, version, found):
    from launch.compare.cli import CompareError, load_run

    data = _report_data() if version is None else {"schema_version": version, **_report_data()}
    (tmp_path / "report.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CompareError) as e:
        load_run(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}/report.json: {found} of this tool, and this one reads schema_version 1; "
                            "run the score stage again on its folder with the same config: it rewrites the report "
                            "from the judgements it recorded, judging nothing again")


def test_an_integer_too_long_for_a_float_is_named_not_an_overflow(tmp_path):
    data = {"schema_version": 1, **_report_data()}
    data["elapsed_s"]["edit"] = 10 ** 400
    with pytest.raises(SchemaError, match=r"r.json: elapsed_s.edit: must be a finite number, got 1000"):
        Report.from_json(data, "r.json")


def _manifest(tmp_path):
    from shards.store import ShardWriter

    import torch

    with ShardWriter(str(tmp_path), rank=0, world_size=1, per_shard=2) as writer:
        for sample_id in ("a", "b"):
            writer.add(sample_entry(sample_id), torch.zeros(8, 16, 3, dtype=torch.uint8))
    samples = [{**e, "status": "ok"} for part in writer.parts for e in part["samples"]]
    return manifest_data(writer.parts, samples + [failed_entry("c", "cannot decode image c.png")])


def test_the_manifest_round_trips_through_its_definition(tmp_path):
    data = _manifest(tmp_path)
    write_manifest(str(tmp_path), data)
    assert read_manifest(str(tmp_path)) == data
    assert Manifest.from_json(data, "m.json").to_json() == data


def test_an_edited_sample_that_does_not_say_where_its_image_is_is_not_written(tmp_path):
    data = _manifest(tmp_path)
    del data["samples"][1]["shard"]
    with pytest.raises(SchemaError, match=r"manifest.json: samples\[1\].shard: expected text for a sample with "
                                          r"status 'ok', got nothing \(the key is missing\)"):
        write_manifest(str(tmp_path), data)
    assert not os.path.exists(tmp_path / "manifest.json")


def test_a_manifest_of_an_earlier_version_is_refused_saying_to_run_the_edit_stage_again(tmp_path):
    data = _manifest(tmp_path)
    del data["schema_version"]
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "qwen-edit-bench/manifest-v2", **data}))
    with pytest.raises(ShardError, match="has no schema_version.*run the edit stage again on this folder with the "
                                         "same config: it keeps every verified shard part, edits nothing again"):
        read_manifest(str(tmp_path))


def test_a_run_record_without_a_version_reads_as_the_first_and_another_version_is_refused(tmp_path):
    out = str(tmp_path)
    begin_attempt(out, "edit", {"edit.seed": 0}, world_size=1)
    record = json.loads(open(record_path(out, "edit"), encoding="utf-8").read())
    assert record["schema_version"] == 1
    del record["schema_version"]                                     # as records were written before versions
    open(record_path(out, "edit"), "w", encoding="utf-8").write(json.dumps(record))
    assert read_record(out, "edit") == {"schema_version": 1, **record}
    open(record_path(out, "edit"), "w", encoding="utf-8").write(json.dumps({**record, "schema_version": 9}))
    with pytest.raises(ResumeError, match="has schema_version 9.*run with --restart to start this stage over"):
        read_record(out, "edit")


def test_an_attempt_records_only_facts_its_definition_names(tmp_path):
    with pytest.raises(SchemaError, match=r"edit.json: attempts\[0\].edits: unknown key; did you mean 'edited'"):
        begin_attempt(str(tmp_path), "edit", {}, world_size=1, edits=3)


def test_a_journal_judgement_of_another_shape_is_judged_again_not_reported(tmp_path, caplog):
    from score_stage.worker import recorded_judgements
    from shards.journal import JournalWriter, journal_path

    good, odd = _result("a", "x", 6.5), {**_result("b", "x", 4.0), "score": "4"}
    with JournalWriter(journal_path(str(tmp_path), "score", 0, 1)) as journal:
        journal.append([good, odd])
    log = logging.getLogger("test_schema")
    with caplog.at_level(logging.WARNING, logger="test_schema"):
        found = recorded_judgements(types.SimpleNamespace(output_dir=str(tmp_path)), {"a": "e" * 64, "b": "e" * 64},
                                    log)
    assert list(found) == ["a"]
    assert "judgement of sample 'b': score: expected a number from 0 to 10 for a scored sample, got '4'" in caplog.text


def _definitions():
    from shards.folder import run_record
    from shards.report import record, schema

    import shards.manifest

    modules = (shards.manifest, run_record, schema, record)
    return [cls for module in modules for _, cls in inspect.getmembers(module, dataclasses.is_dataclass)
            if cls.__module__ == module.__name__]


def test_every_field_of_every_output_definition_says_what_it_holds():
    undocumented = []
    for cls in _definitions():
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for node, after in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign) and not (isinstance(after, ast.Expr) and
                                                        isinstance(after.value, ast.Constant)):
                undocumented.append(f"{cls.__name__}.{node.target.id}")
    assert len(_definitions()) >= 20 and not undocumented, undocumented


@pytest.mark.slow
def test_a_folder_of_an_earlier_version_is_rewritten_by_running_both_stages_again_with_nothing_redone(
        pythons, demo_run, tmp_path):
    config, run = demo_run
    old = str(tmp_path / "old")
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("logs"))
    for name, change in (("manifest.json", {"format": "qwen-edit-bench/manifest-v2"}), ("report.json", {})):
        data = json.loads(open(os.path.join(old, name), encoding="utf-8").read())
        del data["schema_version"]                                   # as the earlier version wrote them
        open(os.path.join(old, name), "w", encoding="utf-8").write(json.dumps({**change, **data}))
    done = run_module(base_python(), ["-m", "launch", "compare", run, old, "--output", str(tmp_path / "c")])
    assert done.returncode == 2 and "report.json: has no schema_version" in done.stderr
    assert "run the score stage again on its folder with the same config" in done.stderr
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", old])
    assert done.returncode != 0 and "run the edit stage again on this folder" in done.stdout + done.stderr
    for python, module, nothing in ((pythons["edit"], "edit_stage", "0 to edit"),
                                    (pythons["score"], "score_stage", "0 to judge")):
        done = torchrun(python, module, 2, ["--config", config, "--output-dir", old])
        assert done.returncode == 0 and nothing in done.stdout + done.stderr, done.stdout + done.stderr
    done = run_module(base_python(), ["-m", "launch", "compare", run, old, "--output", str(tmp_path / "c")])
    assert done.returncode == 0, done.stdout + done.stderr
    (pair,) = json.loads((tmp_path / "c" / "compare.json").read_text(encoding="utf-8"))["pairs"]
    assert pair["same_data"] and pair["overall"]["n"] == 10 and pair["overall"]["mean_difference"] == 0
    rewritten = json.loads(open(os.path.join(old, "report.json"), encoding="utf-8").read())
    original = json.loads(open(os.path.join(run, "report.json"), encoding="utf-8").read())
    assert [s["score"] for s in rewritten["samples"]] == [s["score"] for s in original["samples"]]

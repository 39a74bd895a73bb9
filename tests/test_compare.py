"""`launch compare`: a leaderboard and paired statistics of runs, a page that opens offline, and runs judged on
other scales refused."""

import json
import os
import re
import shutil

import pytest

from conftest import REPO, base_python, chromium, console_messages, needs_chromium, run_module, torchrun, write_config
from examples import RECORD, RUN
from launch.compare.cli import compare, markdown
from launch.compare.page import build_page
from score_stage.report import build_report
from shards.report.schema import REPORT_SCHEMA_VERSION


def _report(name, scores, judge="tiny/judge", mode="expected", prompts="p1", dataset="d1", originals=None):
    samples = [{"id": i, "category": c, "instruction": f"do {i}", "score": s, "status": "ok" if s is not None
                else "unparsed", "dimensions": {}, "response": None,
                "original_sha256": (originals or {}).get(i, f"o-{i}")} for i, c, s in scores]
    cats = list(dict.fromkeys(c for _, c, _ in scores))
    return {"folder": f"/runs/{name}", "thumbnails": {}, "report": build_report(
        samples, cats, schema_version=REPORT_SCHEMA_VERSION, edit_model=f"editor {name}", judge_model=judge,
        scoring_mode=mode, record={**RECORD, "judge": {"model": judge, "revision": None, "fingerprint": "f"},
                                   "judging": {**RECORD["judging"], "prompts_sha256": prompts},
                                   "dataset": {"path": "/data/b.jsonl", "sha256": dataset}}, **RUN)}


A = [("s1", "x", 5.0), ("s2", "x", 6.0), ("s3", "y", 7.0), ("s4", "y", None)]
B = [("s1", "x", 4.0), ("s2", "x", 6.0), ("s3", "y", 5.0), ("s4", "y", 3.0), ("s5", "y", 1.0)]


def test_pairs_are_computed_over_the_samples_both_scored():
    result = compare({"a": _report("a", A), "b": _report("b", B)}, allow_different_judges=False)
    (pair,) = result["pairs"]
    assert pair["same_judging"] and pair["overall"]["n"] == 3                 # s4 unscored in a, s5 only in b
    assert pair["overall"]["mean_difference"] == pytest.approx((1 + 0 + 2) / 3)
    assert (pair["overall"]["wins"], pair["overall"]["ties"], pair["overall"]["losses"]) == (2, 1, 0)
    assert pair["overall"]["p_value"] == 0.5                                  # +-1 +-2: 2 of 4 as far as 3
    assert pair["categories"]["y"]["n"] == 1 and pair["categories"]["y"]["p_value"] == 1.0
    assert [r["id"] for r in result["samples"]][:2] == ["s3", "s1"]          # largest disagreement first


@pytest.mark.parametrize("change, named", [({"judge": "other/judge"}, "judge: tiny/judge vs other/judge"),
                                           ({"mode": "generate"}, "scoring mode: expected vs generate"),
                                           ({"prompts": "p2"}, "prompts sha256: p1 vs p2")])
def test_runs_on_other_scales_are_named_and_not_compared_unless_allowed(change, named):
    runs = {"a": _report("a", A), "b": _report("b", B, **change)}
    (pair,) = compare(runs, allow_different_judges=False)["pairs"]
    assert "refused" in pair and named in pair["differences"] and "overall" not in pair
    assert named in markdown(compare(runs, allow_different_judges=False))
    (allowed,) = compare(runs, allow_different_judges=True)["pairs"]
    assert allowed["overall"]["n"] == 3 and named in allowed["warning"]
    assert "⚠" in markdown(compare(runs, allow_different_judges=True))


def test_runs_of_other_data_are_named_and_not_compared_unless_allowed():
    # The same ids, but another dataset file, and other originals or instructions behind two of them.
    other = _report("b", B, dataset="d2", originals={"s1": "o-other"})
    other["report"]["samples"][1]["instruction"] = "do something else"
    runs = {"a": _report("a", A), "b": other}
    (pair,) = compare(runs, allow_different_judges=False)["pairs"]
    named = ["dataset file sha256: d1 vs d2",
             "2 of 4 shared ids have another original image, instruction or category: s1, s2"]
    assert "refused" in pair and "overall" not in pair and pair["data_differences"] == named
    assert "--allow-different-data" in pair["refused"] and all(n in markdown(compare(runs)) for n in named)
    (allowed,) = compare(runs, allow_different_judges=False, allow_different_data=True)["pairs"]
    assert allowed["overall"]["n"] == 3 and all(n in allowed["warning"] for n in named)
    assert markdown(compare(runs, allow_different_data=True)).count("⚠") >= 1 + len(allowed["categories"])
    page = build_page(compare(runs, allow_different_data=True), runs)
    assert page.count("⚠ different data") == 1 + len(allowed["categories"])     # on every figure's row


def test_one_replaced_original_image_is_enough_to_refuse_a_pair():
    runs = {"a": _report("a", A), "b": _report("b", B, originals={"s3": "o-replaced"})}
    (pair,) = compare(runs, allow_different_judges=False)["pairs"]
    assert pair["data_differences"] == ["1 of 4 shared ids have another original image, instruction or category: "
                                        "s3"] and "refused" in pair


def test_a_report_that_does_not_record_its_data_is_refused_naming_what_is_missing():
    old = _report("b", B)
    del old["report"]["record"]["dataset"]
    for s in old["report"]["samples"]:
        del s["original_sha256"]
    (pair,) = compare({"a": _report("a", A), "b": old}, allow_different_judges=False)["pairs"]
    assert "refused" in pair and pair["data_differences"] == [
        "dataset file sha256: not recorded in b's report.json (written before reports recorded it: run the score "
        "stage on that folder again, with its config, to rewrite its report; nothing is judged again)"]


def test_a_report_written_before_reports_had_a_record_is_named_like_one_without_its_data(tmp_path):
    from launch.compare.cli import load_run

    oldest = _report("b", B)["report"]
    del oldest["record"]                                   # reports before the run record: no 'record' at all
    runs = {"a": _report("a", A), "b": load_run(_run_folder(tmp_path, "b", oldest))}
    (pair,) = compare(runs, allow_different_judges=False)["pairs"]
    assert "refused" in pair and pair["data_differences"] == [
        "dataset file sha256: not recorded in b's report.json (written before reports recorded it: run the score "
        "stage on that folder again, with its config, to rewrite its report; nothing is judged again)"]


def test_runs_with_no_sample_in_common_say_so_plainly():
    runs = {"a": _report("a", A), "b": _report("b", [("t1", "x", 4.0), ("t2", "y", 5.0)])}
    result = compare(runs, allow_different_judges=False)
    (pair,) = result["pairs"]
    assert pair["note"] == "no sample was scored by both runs (a scored 3, b scored 2, 0 ids in common): " \
                           "nothing to compare" and "overall" not in pair
    text = markdown(result)
    assert pair["note"] in text and "None" not in text and "nan" not in text.lower()
    assert pair["note"] in build_page(result, runs)


def _run_folder(tmp_path, name, report):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return str(folder)


def test_the_same_run_given_twice_is_refused_also_through_a_symlink(tmp_path, capsys):
    from launch.compare.cli import main

    folder = _run_folder(tmp_path, "a", _report("a", A)["report"])
    os.symlink(folder, tmp_path / "link")
    for second in (folder, str(tmp_path / "link"), folder + "/"):
        assert main([folder, second, "--output", str(tmp_path / "out")]) == 2
        assert f"{folder} and {second} are the same run folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def _broken(report, change):
    report = json.loads(json.dumps(report))
    change(report)
    return report


@pytest.mark.parametrize("change, named", [
    (lambda r: r["samples"][1].update(score="high"),
     "samples[1].score: expected a number from 0 to 10 for a scored sample, got 'high'"),
    (lambda r: r["samples"][1].update(score=None), "samples[1].score: expected a number from 0 to 10 for a scored "
                                                   "sample, got null"),
    (lambda r: r["samples"][3].update(score=2.0), "samples[3].score: expected null for a sample with status "
                                                  "'unparsed', got 2.0"),
    (lambda r: r.pop("overall"), "overall: expected an object, got nothing (the key is missing)"),
    (lambda r: r.pop("samples"), "samples: expected a list, got nothing (the key is missing)"),
    (lambda r: r["overall"].update(mean_over_samples="4.5"), "overall.mean_over_samples: expected a number from 0 "
                                                             "to 10, or null, got '4.5'"),
    (lambda r: r["categories"]["x"].update(count=-1), "categories.x.count: expected a count (0 or more), got -1"),
    (lambda r: r["samples"][0].update(status="done"), "samples[0].status: expected one of ok, unparsed, failed, got "
                                                      "'done'"),
    (lambda r: r["samples"][2].update(id="s1"), "samples[2].id: 's1' appears twice (first at samples[0])"),
    (lambda r: r["record"]["dataset"].update(sha256=7), "record.dataset.sha256: expected text, got 7"),
    (lambda r: r.update(judge_model=None), "judge_model: expected text, got null"),
    # Off the judge's 0..10 scale: two such scores made a difference of inf, written to compare.json as Infinity.
    (lambda r: r["samples"][0].update(score=1e308), "samples[0].score: expected a number from 0 to 10 for a scored "
                                                   "sample, got 1e+308"),
    (lambda r: r["samples"][0].update(score=-0.5), "samples[0].score: expected a number from 0 to 10 for a scored "
                                                  "sample, got -0.5"),
    (lambda r: r["samples"][0].update(score=10 ** 400), "samples[0].score: expected a number from 0 to 10 for a "
                                                      "scored sample, got " + str(10 ** 400)[:57] + "..."),
    (lambda r: r["overall"].update(mean_over_categories=11), "overall.mean_over_categories: expected a number from 0 "
                                                             "to 10, or null, got 11"),
    (lambda r: r["categories"]["y"].update(mean_ci95=[1, 1e400]), "categories.y.mean_ci95: expected null or [low, "
                                                                  "high] from 0 to 10, got [1, Infinity]"),
    # A sample of a category the report does not list was left out of every pair's figures without a word.
    (lambda r: r["samples"][0].update(category="z"), "samples[0].category: 'z' is not one of the report's "
                                                     "categories (x, y)"),
])
def test_a_hand_edited_report_is_refused_naming_the_file_and_field(tmp_path, change, named):
    from launch.compare.cli import CompareError, load_run

    folder = _run_folder(tmp_path, "a", _broken(_report("a", A)["report"], change))
    with pytest.raises(CompareError) as e:
        load_run(folder)
    assert str(e.value) == f"{folder}/report.json: {named}"


def test_compare_holds_scores_to_the_judges_own_scale():
    from launch.compare.inputs import MAX_SCORE, MIN_SCORE
    from score_stage import parsing

    assert (MIN_SCORE, MAX_SCORE) == (parsing.MIN_SCORE, parsing.MAX_SCORE)


def test_a_report_nested_too_deep_for_the_parser_is_named_not_a_traceback(tmp_path):
    from launch.compare.cli import CompareError, load_run

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "report.json").write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(CompareError, match=r"a/report.json: not valid JSON: nested too deep"):
        load_run(str(folder))


def test_every_run_keeps_a_name_of_its_own_whatever_its_folders_are_called(tmp_path):
    from launch.compare.cli import unique_names

    # Two runs named 'a' and two named 'a #1', all under folders named x or y: the numbering of the first two
    # ('x/a #1') took the third's name, and the third run was dropped from the comparison without a word.
    folders = [str(tmp_path / f"u{i}" / parent / name)
               for i, (parent, name) in enumerate([("x", "a"), ("x", "a"), ("x", "a #1"), ("y", "a #1")])]
    names = unique_names(folders)
    assert len(set(names)) == 4, names
    assert names[3] == "y/a #1" and names[0].startswith("x/a #") and names[1].startswith("x/a #")
    assert unique_names([str(tmp_path / "p" / "run"), str(tmp_path / "q" / "run")]) == ["p/run", "q/run"]


def test_thumbnails_that_are_not_valid_json_are_named(tmp_path):
    from launch.compare.cli import CompareError, load_run

    folder = _run_folder(tmp_path, "a", _report("a", A)["report"])
    (tmp_path / "a" / "thumbnails.json").write_text("{", encoding="utf-8")
    with pytest.raises(CompareError, match=r"a/thumbnails.json: not valid JSON"):
        load_run(folder)


@pytest.mark.slow
@needs_chromium
def test_two_demo_runs_with_different_edit_seeds_compare_on_one_page(pythons, demo_run, tmp_path):
    config = write_config(tmp_path, {"edit.seed": 1})
    other = str(tmp_path / "seed-1")
    for python, module in ((pythons["edit"], "edit_stage"), (pythons["score"], "score_stage")):
        done = torchrun(python, module, 2, ["--config", config, "--output-dir", other])
        assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "compare"
    done = run_module(base_python(), ["-m", "launch", "compare", demo_run[1], other, "--output", str(out)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(os.listdir(out)) == ["compare.html", "compare.json", "compare.md"]
    result = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    (pair,) = result["pairs"]
    assert pair["overall"]["n"] == 10 and len(pair["categories"]) == 5
    for figures in pair["categories"].values():                               # every category has all three
        assert figures["mean_difference"] is not None and len(figures["mean_difference_ci95"]) == 2
        assert 0 < figures["p_value"] <= 1
    dom, stderr = chromium(str(out / "compare.html"), tmp_path, "--dump-dom")
    assert console_messages(stderr) == [] and 'data-ready="true"' in dom
    assert len(re.findall(r'<article class="row"', dom)) == 10 and "10 of 10 samples" in dom
    assert len(re.findall(r'<img src="data:image/jpeg', dom)) == 10 * 3      # the original and both edits
    assert len(re.findall(r'<tr class="pair"', dom)) == 6                    # all, and each of five categories


@pytest.mark.slow
def test_a_demo_run_pairs_with_its_copy_but_not_with_a_run_of_other_data(pythons, demo_run, tmp_path):
    config, run = demo_run
    copy = str(tmp_path / "copy")
    shutil.copytree(run, copy)
    done = run_module(base_python(), ["-m", "launch", "compare", run, copy, "--output", str(tmp_path / "same")])
    assert done.returncode == 0, done.stdout + done.stderr
    (pair,) = json.loads((tmp_path / "same" / "compare.json").read_text(encoding="utf-8"))["pairs"]
    assert pair["same_data"] and pair["overall"]["n"] == 10 and pair["overall"]["mean_difference"] == 0

    # The demo dataset with one instruction changed: the same ids, two of them judged.
    shutil.copytree(os.path.join(REPO, "demo", "data"), tmp_path / "data")
    lines = (tmp_path / "data" / "benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "instruction": "Paint the glass red."}, ensure_ascii=False)
    (tmp_path / "data" / "benchmark.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    other_config = write_config(tmp_path, {"dataset.path": str(tmp_path / "data" / "benchmark.jsonl"),
                                           "dataset.limit": 2})
    other = str(tmp_path / "other")
    for python, module in ((pythons["edit"], "edit_stage"), (pythons["score"], "score_stage")):
        done = torchrun(python, module, 2, ["--config", other_config, "--output-dir", other])
        assert done.returncode == 0, done.stdout + done.stderr
    done = run_module(base_python(), ["-m", "launch", "compare", run, other, "--output", str(tmp_path / "o")])
    assert done.returncode == 0, done.stdout + done.stderr
    (pair,) = json.loads((tmp_path / "o" / "compare.json").read_text(encoding="utf-8"))["pairs"]
    digests = [json.loads(open(os.path.join(f, "manifest.json"), encoding="utf-8").read())["dataset"]["sha256"]
               for f in (run, other)]
    assert "refused" in pair and pair["data_differences"] == [
        f"dataset file sha256: {digests[0]} vs {digests[1]}",
        f"1 of 2 shared ids have another original image, instruction or category: {first['id']}"]
    assert f"were not compared: dataset file sha256: {digests[0]} vs {digests[1]}" in done.stderr


@pytest.mark.slow
def test_a_report_written_before_the_data_was_recorded_is_rewritten_by_running_the_score_stage_again(
        pythons, demo_run, tmp_path):
    config, run = demo_run
    copy = str(tmp_path / "copy")
    shutil.copytree(run, copy)
    path = os.path.join(copy, "report.json")
    report = json.loads(open(path, encoding="utf-8").read())
    del report["record"]["dataset"]
    for sample in report["samples"]:
        del sample["original_sha256"]
    open(path, "w", encoding="utf-8").write(json.dumps(report))
    done = run_module(base_python(), ["-m", "launch", "compare", run, copy, "--output", str(tmp_path / "c")])
    assert "dataset file sha256: not recorded in copy's report.json" in done.stderr
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", copy])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 to judge" in done.stdout + done.stderr
    done = run_module(base_python(), ["-m", "launch", "compare", run, copy, "--output", str(tmp_path / "c")])
    (pair,) = json.loads((tmp_path / "c" / "compare.json").read_text(encoding="utf-8"))["pairs"]
    assert pair["same_data"] and pair["overall"]["n"] == 10

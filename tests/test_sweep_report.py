"""A sweep's report (`launch.sweep`): the checkpoints' order, their figures and paired differences computed as
`launch compare` computes them, the best checkpoint and how sure that is, and sweep.json/.md/.html (the page also
as headless Chromium renders it)."""

import html
import json
import os
import random
import re
import urllib.parse

import pytest

from conftest import base_python, chromium, console_messages, copy_run, needs_chromium, run_module
from examples import RECORD, RUN
from launch.sweep.order import checkpoint_order, natural_key, step_number
from launch.sweep.report import SweepError, write_sweep_report
from score_stage.report import build_report
from shards.report.schema import REPORT_SCHEMA_VERSION


@pytest.mark.parametrize("name, step", [
    ("step-500", 500), ("checkpoint_1000", 1000), ("global_step1500", 1500), ("ckpt-2k", 2000),
    ("iter 7", 7), ("steps-3M", 3_000_000), ("rl-0003", 3), ("lora-r16-step-250", 250),
    ("qwen2.5-step-40", 40), ("final", None), ("best", None), ("qwen2.5", None), ("step-1.5k", None),
    ("ckpt-2kb", 2), ("模型-步骤-12", 12)])
def test_a_name_gives_its_step_as_documented(name, step):
    assert step_number(name) == step


def test_checkpoints_are_ordered_by_step_after_the_base():
    names = ["step-10", "step-9", "base", "step-100", "step-1k"]
    assert checkpoint_order(names, "base") == (["base", "step-9", "step-10", "step-100", "step-1k"], "step")
    # A step decides, whatever comes before the number: sorted as text, ckpt-2k would come before step-500.
    assert checkpoint_order(["ckpt-2k", "step-500", "checkpoint_1000"], None) == (
        ["step-500", "checkpoint_1000", "ckpt-2k"], "step")


def test_names_with_the_same_step_are_ordered_by_name():
    assert checkpoint_order(["b-step-5", "a-step-5", "a-step-4"])[0] == ["a-step-4", "a-step-5", "b-step-5"]


def test_names_without_numbers_are_ordered_by_name_case_blind():
    assert checkpoint_order(["gamma", "Alpha", "beta"], None) == (["Alpha", "beta", "gamma"], "natural")


def test_one_name_without_a_step_makes_the_order_natural_digits_compared_as_numbers():
    names = ["step-10", "final", "step-9", "step-1k", "base"]
    assert checkpoint_order(names, "base") == (["base", "final", "step-1k", "step-9", "step-10"], "natural")
    assert sorted(["a-10", "a-9", "a-9b", "A-9"], key=natural_key) == ["A-9", "a-9", "a-9b", "a-10"]


def test_the_base_comes_first_also_when_it_is_not_among_the_names_and_a_name_given_twice_is_refused():
    assert checkpoint_order(["step-2", "step-1"], "base")[0] == ["base", "step-1", "step-2"]
    with pytest.raises(ValueError, match="given more than once: step-1"):
        checkpoint_order(["step-1", "step-2", "step-1"], None)


# --- the report, from run folders written through the report's own builder -----------------------------------------

HOSTILE = '<script>alert("x")</script>&\'"'


def _write_run(sweep, name, scores, judge="tiny/judge", dataset="d1", page=True):
    """A checkpoint's run folder whose report.json the score stage's builder wrote from `scores`: (id, category,
    score or None)."""
    samples = [{"id": i, "category": c, "instruction": f"do {i}", "score": s, "status": "ok" if s is not None
                else "failed", "dimensions": {}, "response": None, "original_sha256": f"o-{i}"} for i, c, s in scores]
    report = build_report(samples, list(dict.fromkeys(c for _, c, _ in scores)),
                          schema_version=REPORT_SCHEMA_VERSION, edit_model=f"editor + {name}", judge_model=judge,
                          scoring_mode="expected",
                          record={**RECORD, "judge": {"model": judge, "revision": None, "fingerprint": "f"},
                                  "dataset": {"path": "/data/b.jsonl", "sha256": dataset}}, **RUN)
    folder = sweep / name
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    if page:
        (folder / "report.html").write_text("<!doctype html>", encoding="utf-8")
    return str(folder)


# 3 checkpoints, 4 samples, 2 categories: the figures below are worked out by hand in the test.
BASE = [("s1", "x", 4.0), ("s2", "x", 6.0), ("s3", "y", 5.0), ("s4", "y", 3.0)]
STEP1 = [("s1", "x", 5.0), ("s2", "x", 7.0), ("s3", "y", 5.0), ("s4", "y", 4.0)]
STEP2 = [("s1", "x", 6.0), ("s2", "x", 8.0), ("s3", "y", 7.0), ("s4", "y", 5.0)]


@pytest.fixture
def sweep(tmp_path):
    for name, scores in (("step-2", STEP2), ("base", BASE), ("step-1", STEP1)):
        _write_run(tmp_path, name, scores)
    return tmp_path


def test_each_checkpoint_has_its_reports_means_in_order(sweep):
    result = write_sweep_report(str(sweep), ["step-2", "step-1"], "base")
    assert [c["name"] for c in result["checkpoints"]] == ["base", "step-1", "step-2"] and result["order"] == "step"
    assert [c["mean_over_samples"] for c in result["checkpoints"]] == [4.5, 5.25, 6.5]
    assert [(c["categories"]["x"]["mean"], c["categories"]["y"]["mean"]) for c in result["checkpoints"]] == [
        (5.0, 4.0), (6.0, 4.5), (7.0, 6.0)]
    step1 = result["checkpoints"][1]
    report = json.loads((sweep / "step-1" / "report.json").read_text(encoding="utf-8"))
    assert step1["mean_over_samples_ci95"] == report["overall"]["mean_over_samples_ci95"]     # the report's own
    assert step1["counts"] == {"count": 4, "scored": 4, "unparsed": 0, "failed": 0}
    assert step1["report"] == "step-1/report.html" and step1["step"] == 1 and result["checkpoints"][0]["base"]
    assert sorted(os.listdir(sweep)) == ["base", "step-1", "step-2", "sweep.html", "sweep.json", "sweep.md"]


def test_each_checkpoint_is_paired_with_the_base_and_its_predecessor_as_compare_pairs_them(sweep):
    pairs = write_sweep_report(str(sweep), ["step-1", "step-2"], "base")["pairs"]
    assert [(p["a"], p["b"], p["against"]) for p in pairs] == [
        ("step-1", "base", ["base", "previous"]), ("step-2", "base", ["base"]), ("step-2", "step-1", ["previous"])]
    one, two, step = (p["overall"] for p in pairs)
    # step-1 - base: 1, 1, 0, 1; three non-zero differences flip 8 ways, 2 as far from zero as 3.
    assert (one["n"], one["mean_difference"], one["p_value"]) == (4, 0.75, 0.25)
    assert (one["wins"], one["ties"], one["losses"]) == (3, 1, 0)
    assert pairs[0]["categories"]["x"]["mean_difference"] == 1.0 and pairs[0]["categories"]["y"]["p_value"] == 1.0
    assert (two["mean_difference"], two["p_value"]) == (2.0, 0.125)            # 2, 2, 2, 2: 2 of 16 flips
    # step-2 - step-1: 1, 1 (x) and 2, 1 (y); x's sum is always 2, y's 2, 3 or 4: means 1, 1.25, 1.5.
    assert (step["mean_difference"], step["mean_difference_ci95"], step["p_value"]) == (1.25, [1.0, 1.5], 0.125)


def test_the_best_checkpoint_is_named_with_how_sure_that_is(sweep):
    best = write_sweep_report(str(sweep), ["step-1", "step-2"], "base")["best"]
    assert (best["name"], best["runner_up"]) == ("step-2", "step-1")
    assert best["against_runner_up"]["overall"]["mean_difference"] == 1.25
    # Its interval lies above zero, but with 4 samples no sign-flip p can go below 2/16: not distinguishable.
    assert best["distinguishable"] is False
    assert best["best_in_resamples"] == {"step-2": 1.0, "step-1": 0.0, "base": 0.0}
    assert best["samples_in_resamples"] == 4
    assert "step-2 is NOT distinguishable from step-1" in best["statement"]
    assert "p = 0.1250" in best["statement"] and "best in 100% of 2000 bootstrap resamples" in best["statement"]


def test_a_checkpoint_judged_by_another_judge_or_on_other_data_is_not_paired_and_says_why(tmp_path):
    _write_run(tmp_path, "base", BASE)
    _write_run(tmp_path, "step-1", STEP1, judge="other/judge")
    _write_run(tmp_path, "step-2", STEP2, dataset="d2")
    result = write_sweep_report(str(tmp_path), ["step-1", "step-2"], "base")
    one, two, step = result["pairs"]
    assert one["refused"] == "not compared: the two runs' scores are not on one scale" and "overall" not in one
    assert one["differences"] == ["judge: other/judge vs tiny/judge"]
    assert two["refused"] == "not compared: the two runs' samples are not the same samples"
    assert two["data_differences"] == ["dataset file sha256: d2 vs d1"]
    assert "not on one scale and the two runs' samples are not the same samples" in step["refused"]
    text = (tmp_path / "sweep.md").read_text(encoding="utf-8")
    assert "judge: other/judge vs tiny/judge" in text and "dataset file sha256: d2 vs d1" in text
    best = result["best"]
    assert best["name"] == "step-2" and best["distinguishable"] is None and best["best_in_resamples"] is None
    assert "cannot be paired (not compared: the two runs' scores are not on one scale and the two runs' samples " \
           "are not the same samples: judge: tiny/judge vs other/judge; dataset file sha256: d2 vs d1)" \
           in best["statement"]


def test_checkpoints_with_no_sample_scored_in_common_say_so(tmp_path):
    _write_run(tmp_path, "a", [("s1", "x", 5.0), ("s2", "x", None)])
    _write_run(tmp_path, "b", [("s1", "x", None), ("s2", "x", 7.0)])
    result = write_sweep_report(str(tmp_path), ["b", "a"], None)
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"], pair["against"]) == ("b", "a", ["previous"]) and result["order"] == "natural"
    assert pair["note"] == "no sample was scored by both runs (b scored 1, a scored 1, 2 ids in common): nothing " \
                           "to compare"
    assert pair["note"] in (tmp_path / "sweep.md").read_text(encoding="utf-8")
    assert result["best"]["samples_in_resamples"] == 0 and result["best"]["best_in_resamples"] is None
    assert result["checkpoints"][0]["counts"] == {"count": 2, "scored": 1, "unparsed": 0, "failed": 1}
    assert "b has the highest mean" in result["best"]["statement"] and "cannot be paired: no sample was scored" \
        in result["best"]["statement"]


def test_a_missing_or_unreadable_report_is_refused_naming_the_folder_and_nothing_is_written(tmp_path):
    _write_run(tmp_path, "base", BASE)
    _write_run(tmp_path, "step-1", STEP1)
    (tmp_path / "step-2").mkdir()
    with pytest.raises(SweepError, match=rf"checkpoint 'step-2': {tmp_path}/step-2: no report.json \(run the score"):
        write_sweep_report(str(tmp_path), ["step-1", "step-2"], "base")
    (tmp_path / "step-2" / "report.json").write_text('{"schema_version": 1, "samples": 3}', encoding="utf-8")
    with pytest.raises(SweepError, match=rf"checkpoint 'step-2': {tmp_path}/step-2/report.json: "):
        write_sweep_report(str(tmp_path), ["step-1", "step-2"], "base")
    with pytest.raises(SweepError, match=rf"{tmp_path}/step-3: checkpoint 'step-3' has no run folder"):
        write_sweep_report(str(tmp_path), ["step-1", "step-3"], "base")
    with pytest.raises(SweepError, match=r"checkpoint name '\.\./x': not a folder name"):
        write_sweep_report(str(tmp_path), ["step-1", "../x"], "base")
    assert not [n for n in os.listdir(tmp_path) if n.startswith("sweep.")]


NAMES = [HOSTILE, "检查点-步骤-20", "a&b <c>"]


def test_names_in_any_script_or_holding_markup_are_shown_as_text(tmp_path):
    from launch.sweep.page import build_page

    for name, scores in zip(NAMES, (BASE, STEP1, STEP2)):
        _write_run(tmp_path / "sweep", name.replace("/", "_"), [(i, HOSTILE if c == "x" else "物理", s)
                                                                 for i, c, s in scores])
    names = [n.replace("/", "_") for n in NAMES]
    result = write_sweep_report(str(tmp_path / "sweep"), names[1:], names[0])
    page = (tmp_path / "sweep" / "sweep.html").read_text(encoding="utf-8")
    assert page == build_page(result) and "<script>alert" not in page and page.count("<script>") == 1
    assert '<script>alert("x")</script>' in (tmp_path / "sweep" / "sweep.md").read_text(encoding="utf-8")
    for name in names:
        assert f'<g class="tick" data-checkpoint="{html.escape(name)}">' in page
    assert re.findall(r'href="([^"]+)"', page) == [urllib.parse.quote(f"{n}/report.html") for n in
                                                    [names[0], "a&b <c>", "检查点-步骤-20"]]
    assert not re.search(r'src="(?!data:)', page)
    assert len(re.findall(r'<g class="series"', page)) == 3                  # overall, and both categories
    assert f'data-name="{html.escape(HOSTILE)}"' in page


def test_the_report_is_written_again_by_the_launcher_with_the_bare_python(sweep):
    (sweep / "step-3").mkdir()                                  # not scored yet: named, not reported on
    done = run_module(base_python(), ["-m", "launch", "sweep-report", "--output-dir", str(sweep), "--base", "base"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not reported on, no report.json: step-3" in done.stderr
    assert "step-2 is NOT distinguishable from step-1" in done.stdout and "wrote" in done.stdout
    from launch.sweep.schema import read_sweep

    result = read_sweep(str(sweep / "sweep.json"))
    assert [c["name"] for c in result["checkpoints"]] == ["base", "step-1", "step-2"]
    done = run_module(base_python(), ["-m", "launch", "sweep-report", "--output-dir", str(sweep), "--base", "bse"])
    assert done.returncode == 2 and "--base bse: no subfolder" in done.stderr and "base, step-1, step-2" \
        in done.stderr


def test_a_sweep_json_of_another_version_or_edited_by_hand_is_refused_naming_the_field(sweep):
    from launch.sweep.schema import read_sweep
    from shards.typed_data import SchemaError

    write_sweep_report(str(sweep), ["step-1", "step-2"], "base")
    path = sweep / "sweep.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["pairs"][0]["overall"]["p_value"] = 1.5
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"sweep.json: pairs\[0\].overall.p_value: expected a number from 0 to 1"):
        read_sweep(str(path))
    path.write_text(json.dumps({**data, "schema_version": 2}), encoding="utf-8")
    with pytest.raises(SchemaError, match="has schema_version 2.*python3 -m launch sweep-report --output-dir"):
        read_sweep(str(path))


@pytest.mark.slow
def test_a_sweep_of_real_demo_runs_reads_the_score_stages_reports(demo_run, tmp_path):
    _, run = demo_run
    for name in ("base", "step-100"):                          # the same run twice: every difference is zero
        copy_run(run, str(tmp_path / name))
    done = run_module(base_python(), ["-m", "launch", "sweep-report", "--output-dir", str(tmp_path), "--base", "base"])
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    report = json.loads(open(os.path.join(run, "report.json"), encoding="utf-8").read())
    assert [c["mean_over_samples"] for c in result["checkpoints"]] == [report["overall"]["mean_over_samples"]] * 2
    assert result["categories"] == list(report["categories"]) and len(result["categories"]) == 5
    (pair,) = result["pairs"]
    assert (pair["overall"]["n"], pair["overall"]["mean_difference"], pair["overall"]["p_value"]) == (10, 0.0, 1.0)
    assert pair["overall"]["ties"] == 10 and pair["against"] == ["base", "previous"]
    best = result["best"]
    assert best["name"] == "base" and best["distinguishable"] is False                 # a tie: the earlier
    assert best["best_in_resamples"] == {"base": 0.5, "step-100": 0.5}
    assert all(os.path.isfile(tmp_path / c["report"]) for c in result["checkpoints"])


# --- in a real browser -------------------------------------------------------------------------------------------

def page_requests(net_log: str) -> list[str]:
    """The URLs the page asked the network for, from Chromium's net log: the browser's own requests (component
    updates, which it makes even with background networking off) have no origin as their initiator."""
    text = open(net_log, encoding="utf-8").read().rstrip().rstrip(",")
    log = json.loads(text if text.endswith("}") else text + "]}")         # a log cut short at exit
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"].get("url") for e in log["events"] if e["type"] == start
            and "url" in e.get("params", {}) and e["params"].get("initiator") != "not an origin"]


@needs_chromium
def test_the_sweep_page_draws_a_line_per_category_over_every_checkpoint_offline_in_chromium(tmp_path):
    rng = random.Random(3)
    categories = ["物理", "环境", "社会", "因果", HOSTILE]
    names = ["base"] + [f"step-{250 * k}" for k in range(1, 11)] + ["ckpt-3k"]
    for k, name in enumerate(names):
        # ckpt-3k scored no sample of 社会: that line breaks there, and the others go on.
        _write_run(tmp_path / "sweep", name, [(f"{c}-{i}", c, None if (name, c) == ("ckpt-3k", "社会") else
                                               round(min(10.0, rng.uniform(2, 6) + k * 0.2), 2))
                                              for c in categories for i in range(10)])
    write_sweep_report(str(tmp_path / "sweep"), names[::-1], "base")
    page = str(tmp_path / "sweep" / "sweep.html")
    dom, stderr = chromium(page, tmp_path, "--dump-dom", f"--log-net-log={tmp_path}/net.json")
    assert console_messages(stderr) == [] and 'data-ready="true"' in dom       # its script ran to its end
    assert page_requests(str(tmp_path / "net.json")) == []
    series = re.findall(r'<g class="series" data-series="(\d+)" data-name="([^"]*)"', dom)
    assert [html.unescape(name) for _, name in series] == ["overall (mean over samples)", *categories]
    assert re.findall(r'<g class="tick" data-checkpoint="([^"]+)"', dom) == names              # in step order
    assert len(re.findall(r'<circle class="point"', dom)) == len(names) * len(series) - 1
    social = re.search(r'data-name="社会">(.*?)</g>', dom).group(1)
    assert social.count("<polyline") == 1 and social.count('data-checkpoint="ckpt-3k"') == 0
    assert len(re.findall(r'<input type="checkbox" data-series="\d+" checked="">', dom)) == len(series)
    assert "data-pwned" not in dom and "<script>alert" not in dom

"""`launch compare`: a leaderboard and paired statistics of runs, a page that opens offline, and runs judged on
other scales refused."""

import json
import os
import re

import pytest

from conftest import base_python, chromium, console_messages, needs_chromium, run_module, torchrun, write_config
from launch.compare import compare, markdown


def _report(name, scores, judge="tiny/judge", mode="expected", prompts="p1"):
    samples = [{"id": i, "category": c, "instruction": f"do {i}", "score": s, "status": "ok" if s is not None
                else "unparsed"} for i, c, s in scores]
    cats = list(dict.fromkeys(c for _, c, _ in scores))
    return {"folder": f"/runs/{name}", "thumbnails": {}, "report": {
        "edit_model": f"editor {name}", "judge_model": judge, "scoring_mode": mode,
        "record": {"judge": {"revision": None, "fingerprint": "f"}, "judging": {"answer_prefix": "Score: ",
                                                                                 "prompts_sha256": prompts}},
        "overall": {"count": len(samples), "scored": sum(s["score"] is not None for s in samples), "unparsed": 0,
                    "failed": 0, "mean_over_samples": 1.0, "mean_over_categories": 1.0},
        "categories": {c: {"mean": 1.0, "count": 1, "scored": 1} for c in cats}, "samples": samples}}


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

"""Report statistics and files: unparsed and failed samples are counted, never scored."""

import csv
import io
import json
import os

import pytest

from score_stage.report import build_report, markdown_table, results_csv, stats, write_report


def _r(sample_id, category, score, status="ok", response="Score: 1"):
    result = {"id": sample_id, "category": category, "score": score, "status": status, "response": response,
              "instruction": "do it", "dimensions": {"score": {"score": score, "response": response}}}
    if status == "failed":
        return {**result, "dimensions": {}, "reason": "cannot decode image e.png: truncated"}
    return result


RESULTS = [_r("a", "物理", 8.0), _r("b", "物理", None, "unparsed", "hmm"), _r("c", "环境", 4.0),
           _r("d", "环境", 6.0), _r("e", "指代", None, "failed", "")]


def test_stats_use_scored_samples_only():
    assert stats(RESULTS) == {"count": 5, "scored": 3, "unparsed": 1, "failed": 1, "mean": 6.0, "min": 4.0, "max": 8.0,
                              "dimensions": {"score": {"scored": 3, "mean": 6.0}}}
    assert stats([_r("x", "c", None, "unparsed")])["mean"] is None


def test_report_keeps_config_order_and_skips_empty_categories():
    report = build_report(RESULTS, ["环境", "社会", "物理", "指代"], world_size={"edit": 2, "score": 2})
    assert list(report["categories"]) == ["环境", "物理", "指代"]
    assert report["categories"]["物理"]["unparsed"] == 1 and report["categories"]["物理"]["mean"] == 8.0
    assert report["categories"]["指代"]["mean"] is None and report["categories"]["指代"]["failed"] == 1
    assert report["overall"]["count"] == 5 and report["world_size"] == {"edit": 2, "score": 2}


def _dims(sample_id, category, **scores):
    dimensions = {name: {"score": score, "response": f"Score: {score}"} for name, score in scores.items()}
    parsed = all(v is not None for v in scores.values())
    combined = min(scores.values()) if parsed else None
    return {**_r(sample_id, category, combined, "ok" if parsed else "unparsed"), "dimensions": dimensions}


# Uneven categories: 物理 has 3 scored samples, 环境 1, 社会 none scored; one 物理 sample lacks a quality score.
UNEVEN = [_dims("p1", "物理", reasoning=9.0, quality=7.0), _dims("p2", "物理", reasoning=5.0, quality=3.0),
          _dims("p3", "物理", reasoning=8.0, quality=8.0), _dims("p4", "物理", reasoning=6.0, quality=None),
          _dims("e1", "环境", reasoning=2.0, quality=4.0), _dims("s1", "社会", reasoning=None, quality=None)]


def test_both_averages_on_uneven_categories_match_hand_computation():
    o = build_report(UNEVEN, ["物理", "环境", "社会"])["overall"]
    # sample scores (min of the two): 物理 7, 3, 8 -> mean 6; 环境 2 -> mean 2; 社会 none.
    assert o["mean_over_samples"] == pytest.approx((7 + 3 + 8 + 2) / 4)
    assert o["scored"] == 4 and o["unparsed"] == 2 and o["count"] == 6
    assert o["mean_over_categories"] == pytest.approx((6 + 2) / 2) and o["categories_in_mean"] == 2
    reasoning, quality = o["dimensions"]["reasoning"], o["dimensions"]["quality"]
    assert reasoning["scored"] == 5 and reasoning["mean_over_samples"] == pytest.approx((9 + 5 + 8 + 6 + 2) / 5)
    assert reasoning["mean_over_categories"] == pytest.approx(((9 + 5 + 8 + 6) / 4 + 2) / 2)
    assert quality["scored"] == 4 and quality["mean_over_samples"] == pytest.approx((7 + 3 + 8 + 4) / 4)
    assert quality["mean_over_categories"] == pytest.approx((6 + 4) / 2) and quality["categories_in_mean"] == 2


def test_markdown_table_has_a_row_per_category_and_both_averages():
    table = markdown_table(build_report(RESULTS, ["物理", "环境", "指代"]))
    assert "| 物理 | 2 | 1 | 1 | 0 | 8.000 | [8.00, 8.00] | 8.000 | 8.000 |" in table
    assert "| 环境 | 2 | 2 | 0 | 0 | 5.000 | [4.00, 6.00] | 4.000 | 6.000 |" in table     # resampled 4, 6: 4..6
    assert "| 指代 | 1 | 0 | 0 | 1 | – | – | – | – |" in table
    # Over samples: (8 + two draws of {4, 6}) / 3 is 5.33, 6 or 6.67; over categories: (8 + 4..6) / 2.
    assert table.splitlines()[-2].startswith("| **mean over samples** | 5 | 3 | 1 | 1 | 6.000 | [5.33, 6.67] |")
    assert table.splitlines()[-1] == "| **mean over categories** | 2 categories | | | | 6.500 | [6.00, 7.00] | | |"


def test_markdown_table_shows_each_dimension_when_there_are_several():
    lines = markdown_table(build_report(UNEVEN, ["物理", "环境", "社会"])).splitlines()
    assert lines[0].endswith("| max | reasoning | quality |")
    assert lines[2] == ("| 物理 | 4 | 3 | 1 | 0 | 6.000 | [3.00, 8.00] | 3.000 | 8.000 | 7.000 [5.50, 8.50] | "
                        "6.000 [3.00, 8.00] |")
    assert lines[-1].endswith("| 4.000 | [2.50, 5.00] | | | 4.500 [3.75, 5.25] | 5.000 [3.50, 6.00] |")


def test_csv_has_a_score_column_per_dimension():
    rows = list(csv.DictReader(io.StringIO(results_csv(UNEVEN))))
    assert list(rows[0])[:6] == ["id", "category", "score", "status", "score:reasoning", "score:quality"]
    assert (rows[3]["score"], rows[3]["score:reasoning"], rows[3]["score:quality"]) == ("", "6.0", "")


def test_csv_quotes_multiline_responses():
    rows = list(csv.DictReader(io.StringIO(results_csv([_r("a", "物理", 7.5, response="line 1\nline, 2")]))))
    assert rows == [{"id": "a", "category": "物理", "score": "7.5", "status": "ok", "instruction": "do it",
                     "response": "line 1\nline, 2", "reason": ""}]
    failed = list(csv.DictReader(io.StringIO(results_csv([_r("e", "指代", None, "failed", None)]))))
    assert failed[0]["status"] == "failed" and failed[0]["reason"] == "cannot decode image e.png: truncated"


def test_write_report_writes_four_files(tmp_path):
    report = build_report(RESULTS, ["物理", "环境", "指代"], edit_model="e", judge_model="j", scoring_mode="generate",
                          config={"dataset": {"path": "d.jsonl"}}, elapsed_s={"edit": 1.0, "score": 2.0},
                          world_size={"edit": 1, "score": 1}, attempts={"edit": [], "score": []},
                          versions={"edit": {}, "score": {}})
    paths = write_report(str(tmp_path), report, thumbnails={})
    assert json.load(open(paths["json"], encoding="utf-8"))["overall"]["scored"] == 3
    assert len(open(paths["csv"], encoding="utf-8").read().splitlines()) == 6
    md = open(paths["md"], encoding="utf-8").read()
    assert "Unparsed (1): b" in md and "Failed (1): e (cannot decode image e.png: truncated)" in md
    assert open(paths["html"], encoding="utf-8").read().count('<article class="card"') == 5
    assert sorted(os.listdir(tmp_path)) == ["report.html", "report.json", "report.md", "results.csv", "thumbnails.json"]


def test_a_pipe_in_a_category_name_does_not_add_a_column():
    table = markdown_table(build_report([_r("a", "a|b", 8.0), _r("b", "c\nd", 6.0)], ["a|b", "c\nd"]))
    rows = table.splitlines()
    assert len(rows) == 2 + 2 + 2                                   # header, rule, two categories, two averages
    assert all(row.replace("\\|", "").count("|") == rows[0].count("|") for row in rows[:4])
    assert "| a\\|b | 1 |" in table and "| c d | 1 |" in table


def test_every_mean_has_its_interval_in_report_json():
    report = build_report(UNEVEN, ["物理", "环境", "社会"])
    o = report["overall"]
    assert o["mean_over_samples_ci95"] == [2.75, 6.5] and o["mean_over_categories_ci95"] == [2.5, 5.0]
    assert report["categories"]["环境"]["mean_ci95"] == [2.0, 2.0] and report["categories"]["社会"]["mean_ci95"] is None
    assert report["categories"]["物理"]["dimensions"]["reasoning"]["mean_ci95"] == [5.5, 8.5]
    assert o["dimensions"]["quality"]["mean_over_samples_ci95"] == [3.25, 7.0]
    assert report["bootstrap"]["resamples"] >= 1000


def test_agreement_with_human_ratings_per_category_and_overall():
    results = [_r("a", "x", 1.0), _r("b", "x", 2.0), _r("c", "x", 3.0), _r("d", "y", 4.0),
               _r("e", "y", None, "unparsed"), _r("f", "y", 6.0)]
    human = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0, "e": 9.0}            # f has no human score
    found = build_report(results, ["x", "y"], human_scores=human)["human_agreement"]
    assert found["overall"]["n"] == 4 and found["overall"]["spearman"] == pytest.approx(0.8)
    assert found["overall"]["kendall_tau_b"] == pytest.approx(4 / 6)
    assert found["categories"]["y"]["n"] == 1 and found["categories"]["y"]["spearman"] is None
    assert found["categories"]["x"]["pairwise_accuracy"] == pytest.approx(2 / 3)
    assert "human_agreement" not in build_report(results, ["x", "y"])

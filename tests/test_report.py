"""Report statistics and files: unparsed and failed samples are counted, never scored."""

import csv
import io
import json

from score_stage.report import build_report, markdown_table, results_csv, stats, write_report


def _r(sample_id, category, score, status="ok", response="Score: 1"):
    result = {"id": sample_id, "category": category, "score": score, "status": status, "response": response,
              "instruction": "do it"}
    return {**result, "reason": "cannot decode image e.png: truncated"} if status == "failed" else result


RESULTS = [_r("a", "物理", 8.0), _r("b", "物理", None, "unparsed", "hmm"), _r("c", "环境", 4.0),
           _r("d", "环境", 6.0), _r("e", "指代", None, "failed", "")]


def test_stats_use_scored_samples_only():
    assert stats(RESULTS) == {"count": 5, "scored": 3, "unparsed": 1, "failed": 1, "mean": 6.0, "min": 4.0, "max": 8.0}
    assert stats([_r("x", "c", None, "unparsed")])["mean"] is None


def test_report_keeps_config_order_and_skips_empty_categories():
    report = build_report(RESULTS, ["环境", "社会", "物理", "指代"], world_size={"edit": 2, "score": 2})
    assert list(report["categories"]) == ["环境", "物理", "指代"]
    assert report["categories"]["物理"]["unparsed"] == 1 and report["categories"]["物理"]["mean"] == 8.0
    assert report["categories"]["指代"]["mean"] is None and report["categories"]["指代"]["failed"] == 1
    assert report["overall"]["count"] == 5 and report["world_size"] == {"edit": 2, "score": 2}


def test_markdown_table_has_a_row_per_category_and_overall():
    table = markdown_table(build_report(RESULTS, ["物理", "环境", "指代"]))
    assert "| 物理 | 2 | 1 | 1 | 0 | 8.000 | 8.000 | 8.000 |" in table
    assert "| 指代 | 1 | 0 | 0 | 1 | – | – | – |" in table
    assert table.splitlines()[-1].startswith("| **overall** | 5 | 3 |")


def test_csv_quotes_multiline_responses():
    rows = list(csv.DictReader(io.StringIO(results_csv([_r("a", "物理", 7.5, response="line 1\nline, 2")]))))
    assert rows == [{"id": "a", "category": "物理", "score": "7.5", "status": "ok", "instruction": "do it",
                     "response": "line 1\nline, 2", "reason": ""}]
    failed = list(csv.DictReader(io.StringIO(results_csv([_r("e", "指代", None, "failed", None)]))))
    assert failed[0]["status"] == "failed" and failed[0]["reason"] == "cannot decode image e.png: truncated"


def test_write_report_writes_three_files(tmp_path):
    report = build_report(RESULTS, ["物理", "环境", "指代"], edit_model="e", judge_model="j")
    paths = write_report(str(tmp_path), report)
    assert json.load(open(paths["json"], encoding="utf-8"))["overall"]["scored"] == 3
    assert len(open(paths["csv"], encoding="utf-8").read().splitlines()) == 6
    md = open(paths["md"], encoding="utf-8").read()
    assert "Unparsed (1): b" in md and "Failed (1): e (cannot decode image e.png: truncated)" in md

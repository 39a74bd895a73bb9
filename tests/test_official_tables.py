"""Each benchmark's own table (`score_stage.leaderboards`) from hand-made per-sample judgements, against figures
computed by hand from the benchmark's formulas, in its rounding: ties, a failed sample and every kind of row."""

import pytest

from score_stage.leaderboards import official_tables
from score_stage.leaderboards.risebench import sample_score


def judged(sample_id: str, category: str, **scores: float) -> dict:
    return {"id": sample_id, "category": category, "status": "ok", "score": 1.0,
            "dimensions": {name: {"score": float(s)} for name, s in scores.items()}}


def failed(sample_id: str, category: str) -> dict:
    return {"id": sample_id, "category": category, "status": "failed", "score": None, "dimensions": {}}


def grid(table: dict) -> dict:
    """label -> {column: (value, n)}"""
    return {row["label"]: {c: (cell["value"], cell["n"]) for c, cell in zip(table["columns"], row["cells"])}
            for row in table["rows"]}


def test_gedit_task_means_then_their_plain_mean_per_language_and_subset():
    results = [judged("s1", "background_change", semantics=8, quality=2),      # O = 4
               judged("s2", "background_change", semantics=5, quality=5),      # a tie: O = 5
               judged("s3", "color_alter", semantics=9, quality=4),             # O = 6
               failed("s4", "color_alter"),
               judged("c1", "motion_change", semantics=7, quality=6)]           # O = sqrt(42) = 6.4807...
    extras = {"s1": {"language": "en", "intersection": True}, "s2": {"language": "en", "intersection": False},
              "s3": {"language": "en", "intersection": True}, "s4": {"language": "en", "intersection": False},
              "c1": {"language": "cn", "intersection": False}}
    tables = official_tables("gedit", results, extras)
    assert [t["title"] for t in tables] == ["GEdit-Bench-EN (Full set)", "GEdit-Bench-EN (Intersection set)",
                                            "GEdit-Bench-CN (Full set)"]
    full, inter, cn = map(grid, tables)
    assert full["background_change"] == {"G_SC": (6.5, 2), "G_PQ": (3.5, 2), "G_O": (4.5, 2)}
    assert full["color_alter"] == {"G_SC": (9.0, 1), "G_PQ": (4.0, 1), "G_O": (6.0, 1)}
    # the mean of the task means, not sqrt(7.75 * 3.75) = 5.39 for O
    assert full["Average"] == {"G_SC": (7.75, 3), "G_PQ": (3.75, 3), "G_O": (5.25, 3)}
    assert tables[0]["left_out"] == 1 and tables[1]["left_out"] == 0
    assert inter["Average"] == {"G_SC": (8.5, 2), "G_PQ": (3.0, 2), "G_O": (5.0, 2)}
    assert cn["Average"]["G_O"] == (6.481, 1)                                   # three decimals


def test_risebench_weighted_scores_accuracy_and_percentages():
    results = [judged("t1", "temporal_reasoning", consistency=5, reasoning=5, plausibility=5),   # 5, complete
               judged("t2", "temporal_reasoning", consistency=3, reasoning=1, plausibility=4),   # 2.2 halved: 1.1
               judged("c1", "causal_reasoning", reasoning=4, plausibility=5),    # consistency-free: 4.2
               failed("c2", "causal_reasoning"),
               judged("s1", "spatial_reasoning", consistency=4, reasoning=1, plausibility=1),    # 0.95, floor 1
               judged("l1", "logical_reasoning", consistency=5, reasoning=5),                    # 5, complete
               judged("l2", "logical_reasoning", consistency=5, reasoning=1)]                    # 2.2 halved: 1.1
    assert [round(sample_score(r["category"], r["dimensions"]), 6) for r in results if r["status"] == "ok"] == \
        [5.0, 1.1, 4.2, 1.0, 5.0, 1.1]
    main, dims = official_tables("risebench", results, {})
    assert main["columns"] == ["Temporal", "Causal", "Spatial", "Logical", "Overall"]
    g = grid(main)
    assert g["Accuracy (%)"] == {"Temporal": (50.0, 2), "Causal": (0.0, 1), "Spatial": (0.0, 1),
                                 "Logical": (50.0, 2), "Overall": (33.3, 6)}
    # Overall S = 17.4 / 6 = 2.9 -> 25 * 1.9 = 47.5; temporal S = 3.05 -> 51.25, one decimal
    assert g["Score (%)"]["Overall"] == (47.5, 6) and g["Score-Origin (1-5)"]["Overall"] == (2.9, 6)
    assert g["Score (%)"]["Causal"] == (80.0, 1) and g["Score (%)"]["Spatial"] == (0.0, 1)
    assert g["Score (%)"]["Temporal"] == (round(25 * (6.1 / 2 - 1), 1), 2)
    assert main["left_out"] == 1
    # reasoning 17/6 -> 45.83; consistency 22/5 = 4.4 -> 85; plausibility 15/4 = 3.75 -> 68.75, a tie: 68.8
    assert grid(dims)["Overall"] == {"Instruction Reasoning": (45.8, 6), "Appearance Consistency": (85.0, 5),
                                     "Visual Plausibility": (68.8, 4)}


def test_risebench_subtasks_when_the_data_has_them():
    results = [judged("a", "causal_reasoning", consistency=5, reasoning=5, plausibility=5),
               judged("b", "causal_reasoning", consistency=5, reasoning=3, plausibility=5)]     # 4.0, 75 %
    tables = official_tables("risebench", results, {"a": {"subtask": "physics"}, "b": {"subtask": "chem"}})
    assert grid(tables[2]) == {
        "chem": {"Accuracy (%)": (0.0, 1), "Score (%)": (75.0, 1), "Score-Origin (1-5)": (4.0, 1)},
        "physics": {"Accuracy (%)": (100.0, 1), "Score (%)": (100.0, 1), "Score-Origin (1-5)": (5.0, 1)}}


def test_kris_normalised_pooled_means_per_category_knowledge_type_and_overall():
    results = [judged("a1", "count_change", consistency=5, quality=4, instruction=3),          # 100 75 50
               judged("a2", "color_change", consistency=1, quality=2, instruction=1),          # 0 25 0
               judged("n1", "physics", consistency=4, quality=4, instruction=2, knowledge=1),  # 75 75 25 0
               failed("n2", "physics"),
               judged("h1", "humanities", consistency=5, quality=5, instruction=5, knowledge=5)]
    (table,) = official_tables("kris", results, {})
    g = grid(table)
    assert g["Attribute Perception"] == {"VC": (50.0, 2), "VQ": (50.0, 2), "IF": (25.0, 2), "KP": (None, 0),
                                         "AVG": (41.67, 6)}
    assert g["Natural Science"] == {"VC": (75.0, 1), "VQ": (75.0, 1), "IF": (25.0, 1), "KP": (0.0, 1),
                                    "AVG": (43.75, 4)}
    assert g["Social Science"]["AVG"] == (100.0, 4)
    assert "Logical Reasoning" not in g
    assert g["Factual Knowledge"]["AVG"] == (41.67, 6)
    assert g["Conceptual Knowledge"]["AVG"] == (71.88, 8)       # 575 / 8 = 71.875, a tie: half to even
    assert g["Procedural Knowledge"]["AVG"] == (None, 0)
    assert g["Overall"]["AVG"] == (58.93, 14)                   # 825 / 14
    assert table["left_out"] == 1


def test_imgedit_rounded_sample_and_type_means_and_the_mean_of_types():
    results = [judged("a1", "add", first=4, second=4, third=3),          # 3.67
               judged("a2", "add", first=5, second=5, third=5),          # 5.0 -> add 4.335: 4.33 (binary below)
               judged("b1", "alter", first=2, second=3, third=1),        # the old name of adjust: 2.0
               failed("b2", "adjust"),
               judged("r1", "remove", first=1, second=1, third=1)]
    (table,) = official_tables("imgedit", results, {})
    assert table["columns"] == ["Add", "Adjust", "Remove", "Overall"]
    assert grid(table)["Score (1-5)"] == {"Add": (4.33, 2), "Adjust": (2.0, 1), "Remove": (1.0, 1),
                                          "Overall": (2.44, 4)}    # (4.33 + 2 + 1) / 3
    assert table["left_out"] == 1


def test_a_benchmark_without_an_official_protocol_is_named():
    with pytest.raises(ValueError, match="no official table for benchmark 'other'"):
        official_tables("other", [], {})

"""The official protocols' judging (`score_stage.protocols`): which questions a sample gets, with which pictures,
how each benchmark's answer format is read on its scale, and a sample's result: a failed or unreadable answer is
never made a number."""

import math

import pytest

from score_stage.protocols import OfficialProtocol, Question
from score_stage.protocols import gedit, imgedit, kris, risebench
from shards.judge_prompts import JudgePrompts, prompts_digest

RISE = {n: f"{n}: {{instruct}} / {{reference}}" for n in (
    "prompt_consist", "prompt_reasoning", "prompt_reasoning_w_input", "prompt_spatial_ref", "prompt_spatial_ref_img",
    "prompt_spatial_ref_w_input", "prompt_spatial_cons", "prompt_logical_cons_ans", "prompt_logical_cons",
    "prompt_logical_txt", "prompt_logical_img")}
RISE.update(prompt_generation="generation {as is}", prompt_spatial_qual="quality {as is}",
            prompt_logical_img_wo_q="wo_q {as is}")


def entry(category, **extra):
    return {"id": "s1", "category": category, "instruction": "Do it.", "sha256": "ab", "extra": extra}


def names_and_pictures(found):
    return [(q.name, [kind for kind, _ in q.images]) for q in found]


def test_risebench_questions_follow_the_category_and_the_samples_reference():
    temporal = risebench.questions(entry("temporal_reasoning", reference="old"), RISE)
    assert names_and_pictures(temporal) == [("judge1", ["original", "edited"]), ("judge2", ["edited"]),
                                            ("judge3", ["edited"])]
    assert temporal[1].text == "prompt_reasoning: Do it. / old" and temporal[2].text == "generation {as is}"
    free = risebench.questions(entry("causal_reasoning", reference="x", consistency_free=True, reasoning_img=1), RISE)
    assert names_and_pictures(free) == [("judge2", ["original", "edited"]), ("judge3", ["edited"])]
    spatial = risebench.questions(entry("spatial_reasoning", reference_image="images/r.png"), RISE)
    assert names_and_pictures(spatial)[:2] == [("judge1", ["reference", "edited"]),
                                               ("judge2", ["reference", "edited"])]
    logical = risebench.questions(entry("logical_reasoning", reference="42"), RISE)
    assert names_and_pictures(logical) == [("judge1", ["original", "edited"]), ("judge2", ["edited"])]
    assert all(q.binary for q in logical) and logical[1].text.startswith("prompt_logical_txt")


@pytest.mark.parametrize("text, binary, expected", [
    ("Reasoning...\n**Final Score:** **4**", False, [4.0]),
    ("final score: 5", False, [5.0]),
    ("Final Score: 7", False, None),            # off the 1-5 scale
    ("Final Score: 3, 4", False, None),         # several numbers: the scorer cannot use them either
    ("no score here", False, None),
    ("Final Score: 0", True, [1.0]),            # logical: 0/1 mapped to 1/5
    ("Final Score: 1", True, [5.0]),
])
def test_risebench_reads_the_final_score(text, binary, expected):
    assert risebench.read(Question("judge2", "", (), ("reasoning",), binary=binary), text) == expected


@pytest.mark.parametrize("text, expected", [
    ('{"score": [7, 3], "reasoning": "ok"}', [3]),
    ('Sure: {\n "score" : [8, 9],\n "reasoning" : "fine" }', [8]),
    ("[6, 2]", [2]),
    ('{"score": [11, 3]}', None),
    ('{"score": [7, 3], reasoning: unquoted}', None),     # the scorer loops forever on this; unparsed here
    ("I cannot rate this.", None),                         # the scorer guesses random.randint(0, 10)
])
def test_gedit_reads_the_smaller_of_its_score_list(text, expected):
    assert gedit.read(Question("SC", "", (), ("semantics",)), text) == expected


def test_gedit_questions_join_its_prompts_and_replace_the_instruction():
    prompts = {"_context_no_delimit": "C", "_prompts_0shot_two_image_edit_rule": "R",
               "_prompts_0shot_tie_rule_SC": "\nSC <instruction> {x}", "_prompts_0shot_rule_PQ": "PQ"}
    sc, pq = gedit.questions(entry("color_alter"), prompts)
    assert sc.text == "C\nR\n\nSC Do it. {x}" and pq.text == "C\nPQ"
    assert names_and_pictures([sc, pq]) == [("SC", ["original", "edited"]), ("PQ", ["edited"])]


def test_kris_reads_its_keys_and_asks_the_dual_question_of_knowledge_tasks():
    prompts = {n: f"{n} {{instruct}} {{explanation}}" for n in kris.PROMPT_NAMES}
    found = kris.questions(entry("physics", explanation="falls"), prompts)
    assert [(q.name, q.dimensions) for q in found] == [("VC", ("consistency",)), ("IF", ("instruction", "knowledge")),
                                                       ("VQ", ("quality",))]
    assert found[1].text == "prompt_dual_evaluation Do it. falls"
    view = kris.questions(entry("viewpoint_change", reference_image="images/g.png"), prompts)[1]
    assert [kind for kind, _ in view.images] == ["original", "edited", "reference"]
    dual = Question("IF", "", (), ("instruction", "knowledge"))
    assert kris.read(dual, '{"instruction_score": 4, "knowledge_score": 2, "reasoning": "x"}') == [4.0, 2.0]
    assert kris.read(dual, "instruction_score: 3\nknowledge score 9") is None
    # the scorer's last resort reads the "1" of "1. Detect": this tool does not guess
    assert kris.read(Question("VC", "", (), ("consistency",)), '"reasoning": 1. Detect Difference') is None


def test_imgedit_reads_exactly_three_labelled_scores():
    q = imgedit.questions(entry("alter"), {"adjust": "Rate <edit_prompt>"})[0]
    assert q.text == "Rate Do it."
    assert imgedit.read(q, "Brief reasoning: fine\nPrompt Compliance: 4\nVisual Seamlessness: 3\nPhysical: 3") == \
        [4.0, 3.0, 3.0]
    assert imgedit.read(q, "Prompt Compliance: 4/5\nVisual: 3\nPhysical: 3") is None


def protocol(benchmark, prompts):
    return OfficialProtocol(JudgePrompts(benchmark=benchmark, prompts=prompts, sources=[],
                                         sha256=prompts_digest(prompts)))


def test_a_sample_result_combines_as_the_benchmark_and_never_scores_a_failed_or_unread_answer():
    p = protocol("gedit", {})
    sc, pq = (Question("SC", "", (), ("semantics",)), Question("PQ", "", (), ("quality",)))
    ok = p.result(entry("color_alter"), [(sc, {"response": '{"score": [8, 9]}'}), (pq, {"response": "[2, 5]"})])
    assert ok["status"] == "ok" and math.isclose(ok["score"], 4.0)
    assert ok["dimensions"]["semantics"] == {"score": 8.0, "response": '{"score": [8, 9]}'}
    unread = p.result(entry("color_alter"), [(sc, {"response": "no idea"}), (pq, {"response": "[2, 5]"})])
    assert unread["status"] == "unparsed" and unread["score"] is None
    blocked = p.result(entry("color_alter"), [(sc, {"response": None, "failed": "content filter"}),
                                              (pq, {"response": "[2, 5]"})])
    assert blocked["status"] == "failed" and blocked["score"] is None and blocked["reason"] == "SC: content filter"

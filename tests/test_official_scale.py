"""Runs judged with other official prompts, or under another protocol, are not mixed: `launch compare` names them as
not on one scale, and a resume with other prompts imported is refused. The records and identities are the ones the
score stage writes (`judging_record`, `run_identity`) for a config whose dataset has crafted prompts beside it."""

import pytest

from examples import RECORD, RUN
from launch.compare.cli import compare
from score_stage.report import build_report
from shards.config import load_config
from shards.folder.identity import check_identity, run_identity
from shards.folder.records import ResumeError, begin_attempt
from shards.judge_prompts import judge_prompts_path, prompts_digest, read_judge_prompts
from shards.report.schema import REPORT_SCHEMA_VERSION
from shards.runtime.provenance import judging_record
from test_protocol_config import imported_prompts, official_config

SCORES = [("s1", "temporal_reasoning", 3.0), ("s2", "causal_reasoning", 4.0), ("s3", "causal_reasoning", 2.0)]


def reimport(config, text: str) -> None:
    """The benchmark imported again from a copy whose prompt now reads `text` (another version of it)."""
    folder = judge_prompts_path(config.dataset.path).rsplit("/", 1)[0]
    imported_prompts(folder, prompts={"prompt_consist": text})


def _report(judging: dict, name: str) -> dict:
    samples = [{"id": i, "category": c, "instruction": f"do {i}", "score": s, "status": "ok", "dimensions": {},
                "response": None, "original_sha256": f"o-{i}"} for i, c, s in SCORES]
    record = {**RECORD, "judge": {"model": "gpt-4.1-2025-04-14", "revision": None, "fingerprint": None},
              "judging": judging, "dataset": {"path": "/data/b.jsonl", "sha256": "d1"}}
    report = build_report(samples, ["temporal_reasoning", "causal_reasoning"], schema_version=REPORT_SCHEMA_VERSION,
                          edit_model=f"editor {name}", judge_model="gpt-4.1-2025-04-14", scoring_mode="generate",
                          record=record, **RUN)
    return {"folder": f"/runs/{name}", "thumbnails": {}, "report": report}


def _official_judging(config) -> dict:
    return judging_record(config.score, read_judge_prompts(judge_prompts_path(config.dataset.path)))


def test_runs_on_other_official_prompt_versions_are_not_on_one_scale(tmp_path):
    config = load_config(official_config(tmp_path))
    first = _official_judging(config)
    reimport(config, "Is it consistent now? {instruct}")
    second = _official_judging(config)
    runs = {"a": _report(first, "a"), "b": _report(second, "b"), "c": _report(dict(first), "c")}
    pairs = {(p["a"], p["b"]): p for p in compare(runs, allow_different_judges=False)["pairs"]}
    assert pairs[("a", "c")]["same_judging"] and "overall" in pairs[("a", "c")]
    other = pairs[("a", "b")]
    assert other["refused"].startswith("not compared: the two runs' scores are not on one scale")
    assert other["differences"] == [f"prompts sha256: {first['prompts_sha256']} vs {second['prompts_sha256']}"]
    assert second["prompts_sha256"] == prompts_digest({"prompt_consist": "Is it consistent now? {instruct}"})


def test_an_official_run_and_an_open_one_are_not_on_one_scale(tmp_path):
    official = load_config(official_config(tmp_path))
    opened = load_config(official_config(tmp_path / "open", **{
        "score.protocol": "open", "score.categories": None, "score.mode": "generate",
        "score.prompts": {c: {"system_prompt": "Judge.", "user_prompt_template": "Score: X"}
                          for c in ("temporal_reasoning", "causal_reasoning")}}))
    runs = {"official": _report(_official_judging(official), "official"),
            "open": _report(judging_record(opened.score), "open")}
    (pair,) = compare(runs, allow_different_judges=False)["pairs"]
    assert "refused" in pair and "protocol: official vs open" in pair["differences"]


def test_a_resume_with_other_official_prompts_imported_is_refused_naming_them(tmp_path):
    config = load_config(official_config(tmp_path), {"output_dir": str(tmp_path / "run")})
    before = run_identity(config, "score")
    begin_attempt(config.output_dir, "score", before, world_size=1)
    check_identity(config.output_dir, "score", run_identity(config, "score"))      # the same prompts: resumes
    reimport(config, "Is it consistent now? {instruct}")
    with pytest.raises(ResumeError) as info:
        check_identity(config.output_dir, "score", run_identity(config, "score"))
    was = before["score.official prompts sha256"]
    now = prompts_digest({"prompt_consist": "Is it consistent now? {instruct}"})
    assert f'score.official prompts sha256: was "{was[:40]}' in str(info.value) and f'now "{now[:40]}' in str(info.value)


@pytest.mark.parametrize("official, line", [
    (None, "open: this tool's prompts, each sample's score 0-10"),
    ({"benchmark": "gedit"}, "official: gedit's own prompts, each sample's score O = sqrt(SC * PQ), 0-10"),
    ({"benchmark": "risebench"}, "official: risebench's own prompts, each sample's score its weighted score, 1-5"),
])
def test_the_report_says_which_protocol_made_its_figures_and_on_what_scale(official, line):
    from score_stage.leaderboards.section import protocol_line

    assert protocol_line({} if official is None else {"official": official}) == line

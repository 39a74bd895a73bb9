"""`score.protocol` in the config: the open protocol names its categories by its prompts, the official one by
`score.categories` (the benchmark's own prompts judge, so a prompt in the config is refused rather than ignored);
every config shipped in configs/ loads; the open protocol's run identity is what it was before protocols."""

import json
import os

import pytest
import yaml

from conftest import DEMO_CONFIG, REPO, write_config
from shards.config import ConfigError, load_config, to_dict
from shards.config_prompts import prompt_fields
from shards.config_protocol import judged_categories
from shards.folder.identity import run_identity
from shards.judge_prompts import JUDGE_PROMPTS, JudgePrompts, PromptSource, prompts_digest, to_json

CONFIGS = os.path.join(REPO, "configs")
RISE = ["temporal_reasoning", "causal_reasoning", "spatial_reasoning", "logical_reasoning"]
OFFICIAL = {"score.protocol": "official", "score.mode": "generate", "score.prompts": None, "score.categories": RISE,
            "dataset.categories": None}


def imported_prompts(folder, benchmark: str = "risebench", prompts: dict | None = None) -> str:
    """A dataset folder with a `judge_prompts.json` as import-benchmark writes it (crafted prompts); returns the
    dataset's path (the JSONL itself is not needed to load a config)."""
    os.makedirs(folder, exist_ok=True)
    prompts = prompts or {"prompt_consist": "Is it consistent? {instruct}"}
    found = JudgePrompts(benchmark=benchmark, prompts=prompts, sha256=prompts_digest(prompts),
                         sources=[PromptSource(path="utils.py", sha256="0" * 64, names=list(prompts), commit=None)])
    with open(os.path.join(folder, JUDGE_PROMPTS), "w", encoding="utf-8") as f:
        json.dump(to_json(found), f)
    return os.path.join(str(folder), "benchmark.jsonl")


def official_config(tmp_path, **changes) -> str:
    dataset = imported_prompts(tmp_path / "data")
    return write_config(tmp_path, {**OFFICIAL, "dataset.path": dataset, **changes})


def _refused(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_an_official_config_names_its_categories_without_prompts(tmp_path):
    config = load_config(official_config(tmp_path))
    assert config.score.prompts is None and judged_categories(config.score) == RISE
    assert prompt_fields(config) == {c: [] for c in RISE}         # the protocol reads the fields a sample has
    # The config written beside a run's outputs loads again as it was.
    again = tmp_path / "again"
    again.mkdir()
    data = to_dict(config)
    data.pop("source")
    with open(again / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, allow_unicode=True)
    assert judged_categories(load_config(str(again / "config.yaml")).score) == RISE


@pytest.mark.parametrize("changes, expected", [
    ({"score.prompts": {"temporal_reasoning": {"system_prompt": "S", "user_prompt_template": "Score: X"}}},
     "score.prompts: not used with score.protocol: official, which asks the benchmark's own prompts "
     "(judge_prompts.json beside the dataset); name the categories in score.categories instead: "
     "[temporal_reasoning]"),
    ({"score.categories": None}, "score.categories: required with score.protocol: official"),
    ({"score.categories": []}, "score.categories: required with score.protocol: official"),
    ({"score.categories": ["logical_reasoning", "logical_reasoning"]},
     "score.categories: logical_reasoning listed more than once"),
    ({"score.mode": "expected"}, "score.mode: score.protocol official needs generate"),
    ({"dataset.categories": ["logic_reasoning"]},
     "dataset.categories[0]: unknown category 'logic_reasoning'; did you mean 'logical_reasoning'?"),
])
def test_official_config_mistakes_are_named_at_their_key(tmp_path, changes, expected):
    assert expected in _refused(official_config(tmp_path, **changes))


def test_an_official_config_without_the_imported_prompts_is_refused_naming_the_file(tmp_path):
    dataset = os.path.join(str(tmp_path), "bare", "benchmark.jsonl")
    message = _refused(write_config(tmp_path, {**OFFICIAL, "dataset.path": dataset}))
    assert f"score.protocol: official needs the benchmark's own judge prompts at {tmp_path}/bare/{JUDGE_PROMPTS}" \
        in message


@pytest.mark.parametrize("changes, drop, expected", [
    ({"score.categories": ["物理"]}, (), "score.categories: only used with score.protocol: official"),
    ({}, ("score.prompts",), "score.prompts: missing required key 'prompts'"),
])
def test_the_open_protocol_needs_its_prompts_and_no_categories(tmp_path, changes, drop, expected):
    assert expected in _refused(write_config(tmp_path, changes, drop))


def test_the_open_protocols_identity_has_no_protocol_keys_and_the_official_ones_its_categories(tmp_path):
    # Runs made before protocols existed resume: their identity held neither key.
    open_identity = run_identity(load_config(DEMO_CONFIG, {"output_dir": str(tmp_path / "o")}), "score")
    assert not {"score.protocol", "score.categories"} & set(open_identity)
    official = run_identity(load_config(official_config(tmp_path), {"output_dir": str(tmp_path / "r")}), "score")
    assert official["score.protocol"] == "official" and official["score.categories"] == RISE
    assert official["score.official prompts sha256"] == prompts_digest({"prompt_consist":
                                                                        "Is it consistent? {instruct}"})


def _shipped(name: str, tmp_path) -> dict:
    """Overrides that let a shipped config load here: an official one needs its benchmark's prompts imported."""
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
        score = yaml.safe_load(f)["score"]
    if score.get("protocol") != "official":
        return {}
    benchmark = name.split("-")[0]
    return {"dataset.path": imported_prompts(tmp_path / benchmark, benchmark)}


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(CONFIGS) if n.endswith(".yaml")))
def test_every_shipped_config_loads(name, tmp_path):
    config = load_config(os.path.join(CONFIGS, name), _shipped(name, tmp_path))
    assert judged_categories(config.score)


@pytest.mark.parametrize("name, model, served, warned", [
    ("risebench-official.yaml", None, "gpt-4.1-2025-04-14", False),          # as shipped: the snapshot
    ("gedit-official.yaml", "gpt-4.1", None, True),                          # the alias, before any answer
    # OpenAI answers an alias with the snapshot it resolved to today: still unpinned, tomorrow it may be another.
    ("gedit-official.yaml", "gpt-4.1", "gpt-4.1-2025-04-14", True),
    ("gedit-official-served.yaml", None, "Qwen/Qwen2.5-VL-72B-Instruct", False),   # served on this node
])
def test_a_hosted_judge_named_by_an_alias_is_warned_about(name, model, served, warned, tmp_path):
    from score_stage.leaderboards.section import hosted_unpinned

    overrides = {**_shipped(name, tmp_path), **({"score.model": model} if model else {})}
    warning = hosted_unpinned(load_config(os.path.join(CONFIGS, name), overrides), served)
    assert bool(warning) == warned, warning
    if warned:
        assert "'gpt-4.1' (at api.openai.com) is not pinned to a dated snapshot" in warning

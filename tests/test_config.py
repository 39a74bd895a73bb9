"""Config validation: every mistake is reported at load time with the file, the key path and a hint."""

import os

import pytest

from conftest import DEMO_CONFIG, REPO, write_config
from shards.config import ConfigError, load_config

REAL_CONFIG = os.path.join(REPO, "configs", "qwen-image-edit-2511.yaml")
FIVE = ["物理", "环境", "社会", "因果", "指代"]


def test_demo_config_loads_with_absolute_paths():
    config = load_config(DEMO_CONFIG)
    assert list(config.score.prompts) == FIVE
    assert config.distributed.nproc_per_node == 2
    assert os.path.isabs(config.dataset.path) and os.path.isfile(config.dataset.path)
    assert config.edit.env.venv == os.path.join(REPO, ".envs", "edit")
    assert config.score.env.extras == ["score", "test"]


def test_real_config_is_valid_and_uses_the_official_settings():
    config = load_config(REAL_CONFIG)
    assert config.edit.model == "Qwen/Qwen-Image-Edit-2511"
    assert config.edit.pipeline == "QwenImageEditPlusPipeline"
    assert (config.edit.num_inference_steps, config.edit.true_cfg_scale) == (40, 4.0)
    assert config.edit.negative_prompt == " "      # CFG really runs
    assert config.score.model == "Qwen/Qwen3-VL-30B-A3B-Instruct"
    assert config.score.dtype == config.edit.dtype == "bfloat16"
    assert list(config.score.prompts) == FIVE
    assert config.score.env.venv == os.path.join(REPO, ".envs", "score")


def _error(tmp_path, text_change=None, **kwargs) -> str:
    if text_change:
        with open(DEMO_CONFIG, encoding="utf-8") as f:
            text = f.read().replace(*text_change)
        path = os.path.join(tmp_path, "demo.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        path = write_config(tmp_path, **kwargs)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(path + ": ")
    return message


def test_the_seed_systems_typo_names_the_right_key(tmp_path):
    message = _error(tmp_path, text_change=("user_prompt_template: &user", "user_prompt: &user"))
    assert "score.prompts.物理.user_prompt: unknown key; did you mean 'user_prompt_template'?" in message


@pytest.mark.parametrize("changes, drop, expected", [
    ({"edit.num_inference_step": 2}, (), "edit.num_inference_step: unknown key; did you mean 'num_inference_steps'?"),
    ({}, ("score.prompts.环境.user_prompt_template",), "score.prompts.环境.user_prompt_template: missing required key"),
    ({}, ("edit.model",), "edit.model: missing required key 'model'"),
    ({"score.prompts.物理.user_prompt_template": "Do {instrution}"}, (),
     "unknown placeholder '{instrution}'; did you mean '{instruction}'?"),
    ({"score.prompts.物理.user_prompt_template": "Do {instruction"}, (), "not a valid template"),
    ({"edit.pipeline": "QwenImageEditPlus"}, (), "did you mean 'QwenImageEditPlusPipeline'?"),
    ({"edit.negative_prompt": None}, (), "edit.negative_prompt: required when true_cfg_scale > 1"),
    ({"edit.num_inference_steps": 1}, (), "edit.num_inference_steps: must be at least 2"),
    ({"edit.height": 70}, (), "edit.height: must be a positive multiple of 16"),
    ({"score.batch_size": "two"}, (), "score.batch_size: expected int, got 'two'"),
    ({"score.batch_size": 0}, (), "score.batch_size: must be at least 1"),
    ({"score.dtype": "bf16"}, (), "score.dtype: 'bf16' is not one of"),
    ({"dataset.categories": ["物里"]}, (), "dataset.categories[0]: unknown category '物里'; did you mean '物理'?"),
    ({"edit.env": {"python": "/usr/bin/python3", "venv": "x"}}, (), "edit.env: set only one of python, conda, venv"),
    ({"score.prompts": {}}, (), "score.prompts: expected a non-empty mapping"),
    ({"distributed": {"nproc_per_node": 2, "timout_s": 5}}, (), "distributed.timout_s: unknown key; did you mean 'timeout_s'?"),
])
def test_mistakes_are_named_with_their_key_path(tmp_path, changes, drop, expected):
    assert expected in _error(tmp_path, changes=changes, drop=drop)


def test_unreadable_yaml_is_reported_with_the_file(tmp_path):
    path = os.path.join(tmp_path, "bad.yaml")
    with open(path, "w") as f:
        f.write("edit: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)


def test_overrides_replace_file_values_and_are_validated(tmp_path):
    path = write_config(tmp_path)
    config = load_config(path, {"dataset.limit": 3, "dataset.categories": ["指代"]})
    assert (config.dataset.limit, config.dataset.categories) == (3, ["指代"])
    with pytest.raises(ConfigError, match="dataset.limit: must be at least 1"):
        load_config(path, {"dataset.limit": 0})


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_config(tmp_path / "sub", changes={"dataset.path": "../data/b.jsonl", "output_dir": "out"})
    config = load_config(path)
    assert config.dataset.path == str(tmp_path / "data" / "b.jsonl")
    assert config.output_dir == str(tmp_path / "sub" / "out")


def test_a_hub_id_stays_a_hub_id(tmp_path):
    config = load_config(write_config(tmp_path, changes={"edit.model": "Qwen/Qwen-Image-Edit", "edit.build_tiny": False}))
    assert config.edit.model == "Qwen/Qwen-Image-Edit"


def test_config_files_are_read_with_safe_load(tmp_path):
    path = os.path.join(tmp_path, "evil.yaml")
    with open(path, "w") as f:
        f.write("output_dir: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)

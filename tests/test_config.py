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
    assert config.score.mode == "expected" and config.score.answer_prefix == "Score: "
    for prompts in config.score.prompts.values():
        assert prompts.combine == "geometric_mean"
        assert {n: d.images for n, d in prompts.dimensions.items()} == {
            "reasoning": "original_and_edited", "quality": "edited"}
    reasoning = [p.dimensions["reasoning"].user_prompt_template for p in config.score.prompts.values()]
    assert len(set(reasoning)) == 5                          # each category asks its own question
    assert config.score.env.venv == os.path.join(REPO, ".envs", "score")


def test_configs_that_install_different_extras_never_share_a_venv():
    # The demo's judge venv has the test extra; a real config's does not. Sharing one folder made each rebuild it
    # in turn (minutes each time) whenever a user ran the tests after a real run, or the other way round.
    demo, real = load_config(DEMO_CONFIG), load_config(REAL_CONFIG)
    assert demo.score.env.venv == os.path.join(REPO, ".envs", "score+test")
    assert real.score.env.venv == os.path.join(REPO, ".envs", "score") and real.score.env.extras == ["score"]
    assert demo.edit.env == real.edit.env                   # the same extras: one venv


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
    message = _error(tmp_path, text_change=("      user_prompt_template: |\n        Category",
                                            "      user_prompt: |\n        Category"))
    assert "score.prompts.环境.user_prompt: unknown key; did you mean 'user_prompt_template'?" in message


@pytest.mark.parametrize("changes, drop, expected", [
    ({"edit.num_inference_step": 2}, (), "edit.num_inference_step: unknown key; did you mean 'num_inference_steps'?"),
    ({}, ("score.prompts.环境.dimensions.score.user_prompt_template",),
     "score.prompts.环境.dimensions.score.user_prompt_template: missing required key"),
    ({}, ("edit.model",), "edit.model: missing required key 'model'"),
    ({"score.prompts.环境.dimensions.score.user_prompt_template": "Do {instrution}. Score: X"}, (),
     "score.prompts.环境.dimensions.score.user_prompt_template: unknown placeholder '{instrution}'; "
     "did you mean '{instruction}'?"),
    ({"score.prompts.环境.dimensions.score.user_prompt_template": "Do {instruction"}, (), "not a valid template"),
    ({"score.prompts.环境.dimensions.score.user_prompt_template": "Do {extra}. Score: X"}, (),
     "unknown placeholder '{extra}' (available: {id}, {category}, {instruction}, {description}, and "
     "{extra[KEY]}"),
    ({"score.prompts.环境.dimensions.score.user_prompt_template": "Do {extra.answer}. Score: X"}, (),
     "unknown placeholder '{extra.answer}'"),
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
    ({"distributed": {"nproc_per_node": 2, "timout_s": 5}}, (),
     "distributed.timout_s: unknown key; did you mean 'timeout_s'?"),
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


def _prompts_error(tmp_path, prompts, **score) -> str:
    changes = {"score.prompts": {"物理": prompts}, "dataset.categories": None,
               **{f"score.{k}": v for k, v in score.items()}}
    return _error(tmp_path, changes=changes)


ASKS = {"system_prompt": "Judge. Score: X", "user_prompt_template": "Do {instruction}."}


def test_both_prompt_forms_load_as_dimensions(tmp_path):
    config = load_config(write_config(tmp_path, {"score.prompts": {
        "物理": {**ASKS, "images": "original_and_edited"},
        "环境": {"dimensions": {"a": ASKS, "b": {**ASKS, "images": "original_and_edited"}}, "combine": "min"},
    }, "dataset.categories": None}))
    physics, environment = config.score.prompts["物理"], config.score.prompts["环境"]
    assert list(physics.dimensions) == ["score"] and physics.dimensions["score"].images == "original_and_edited"
    assert physics.combine == "mean" and physics.system_prompt is None
    assert {n: d.images for n, d in environment.dimensions.items()} == {"a": "edited", "b": "original_and_edited"}
    assert environment.combine == "min"


@pytest.mark.parametrize("prompts, score, expected", [
    ({**ASKS, "dimensions": {"a": ASKS}}, {}, "score.prompts.物理: give either system_prompt, user_prompt_template "
                                             "(one dimension) or 'dimensions', not both"),
    ({"dimensions": {"a": ASKS, "b": ASKS}}, {}, "score.prompts.物理.combine: required with several dimensions"),
    ({**ASKS, "combine": "min"}, {}, "score.prompts.物理.combine: only used with several 'dimensions'"),
    ({"dimensions": {"a": ASKS, "b": ASKS}, "combine": "median"}, {}, "'median' is not one of"),
    ({"dimensions": {"a": {**ASKS, "images": "both"}}}, {},
     "score.prompts.物理.dimensions.a.images: 'both' is not one of"),
    ({"dimensions": {"a": {"system_prompt": "Judge.", "user_prompt_template": "Do it."}}}, {},
     "score.prompts.物理.dimensions.a: neither prompt asks for the answer format 'Score: X'"),
    (ASKS, {"answer_prefix": "Score:"}, "score.prompts.物理: neither prompt asks for the answer format 'Score:X'"),
    (ASKS, {"answer_prefix": "  "}, "score.answer_prefix: must contain text"),
    (ASKS, {"mode": "logits"}, "score.mode: 'logits' is not one of ['expected', 'generate']"),
    ({"dimensions": {"a": {**ASKS, "user_prompt_template": "Do {instruction} {orignal}."}}}, {},
     "score.prompts.物理.dimensions.a.user_prompt_template: unknown placeholder '{orignal}'"),
])
def test_prompt_mistakes_are_named_at_the_path_written(tmp_path, prompts, score, expected):
    assert expected in _prompts_error(tmp_path, prompts, **score)


def test_a_chinese_answer_format_is_accepted_when_the_prompts_ask_for_it(tmp_path):
    prompts = {"system_prompt": "请评分。输出：评分：X", "user_prompt_template": "指令：{instruction}"}
    config = load_config(write_config(tmp_path, {"score.prompts": {"物理": prompts}, "dataset.categories": None,
                                                 "score.answer_prefix": "评分："}))
    assert config.score.prompts["物理"].dimensions["score"].system_prompt == prompts["system_prompt"]


def test_set_flags_override_any_key_with_yaml_values_and_are_validated(tmp_path):
    from shards.config import overrides_from_args, stage_argument_parser

    parser = stage_argument_parser("x", "x")
    args = parser.parse_args(["--config", "c", "--set", "score.mode=generate", "--set", "score.batch_size=3",
                              "--set", "dataset.categories=[物理, 指代]", "--limit", "2"])
    overrides = overrides_from_args(args)
    assert overrides == {"score.mode": "generate", "score.batch_size": 3, "dataset.categories": ["物理", "指代"],
                         "dataset.limit": 2}
    config = load_config(write_config(tmp_path), overrides)
    assert (config.score.mode, config.score.batch_size, config.dataset.limit) == ("generate", 3, 2)
    with pytest.raises(ConfigError, match="score.mod: unknown key; did you mean 'mode'"):
        load_config(write_config(tmp_path), {"score.mod": "generate"})
    with pytest.raises(ConfigError, match="--set score.mode: expected KEY=VALUE"):
        overrides_from_args(parser.parse_args(["--config", "c", "--set", "score.mode"]))
    with pytest.raises(ConfigError, match="score.mode: is not a mapping"):
        load_config(write_config(tmp_path), {"score.mode.x": 1})


def test_an_error_about_a_huge_value_quotes_only_a_short_prefix_of_it(tmp_path):
    import signal

    # 403 bytes of YAML that expand to 9**9 strings: quoting the whole value would exhaust memory.
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
        f"&{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    path = tmp_path / "bomb.yaml"
    path.write_text(_with_edit_model(open(write_config(tmp_path), encoding="utf-8").read(),
                                     "[" + ", ".join(levels) + "]"), encoding="utf-8")
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("the error message never came")))
    signal.alarm(10)
    try:
        with pytest.raises(ConfigError) as info:
            load_config(str(path))
    finally:
        signal.alarm(0)
    message = str(info.value)
    assert "edit.model: expected str, got [" in message and len(message) < len(str(path)) + 300


def test_text_that_is_not_valid_unicode_is_refused_at_its_key(tmp_path):
    text = _with_edit_model(open(write_config(tmp_path), encoding="utf-8").read(), '"tiny\\ud83d"')
    path = tmp_path / "surrogate.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"edit.model: is not valid Unicode text"):
        load_config(str(path))


def _with_edit_model(text: str, value: str) -> str:
    """The config text with edit.model's value replaced by `value` (YAML source)."""
    lines = text.splitlines()
    start = lines.index("edit:")
    at = next(i for i in range(start, len(lines)) if lines[i].startswith("  model:"))
    lines[at] = "  model: " + value
    return "\n".join(lines) + "\n"


def test_the_few_step_lora_config_judges_exactly_as_the_real_one():
    lightning = load_config(os.path.join(REPO, "configs", "qwen-image-edit-2511-lightning.yaml"))
    real = load_config(REAL_CONFIG)
    (adapter,) = lightning.edit.lora
    assert adapter.path == "lightx2v/Qwen-Image-Edit-2511-Lightning" and adapter.weight_name.endswith(".safetensors")
    assert (lightning.edit.num_inference_steps, lightning.edit.true_cfg_scale) == (4, 1.0)
    assert lightning.score == real.score                       # one judging scale: `launch compare` pairs them


def test_a_local_lora_that_does_not_exist_is_named(tmp_path):
    message = _error(tmp_path, changes={"edit.lora": [{"path": str(tmp_path / "nope"), "scale": 0.5}]})
    assert f"edit.lora[0].path: no such file or folder: {tmp_path / 'nope'}" in message


def test_a_samples_own_field_in_a_prompt_is_required_of_that_categorys_samples(tmp_path):
    from shards.config_prompts import prompt_fields
    from shards.dataset import DatasetError, load_dataset

    template = "Do {instruction}; the answer is {extra[answer]}. Score: X"
    config = load_config(write_config(tmp_path, {"score.prompts.环境.dimensions.score.user_prompt_template":
                                                 template}))
    assert prompt_fields(config)["环境"] == ["answer"] and prompt_fields(config)["物理"] == []
    with pytest.raises(DatasetError) as e:
        load_dataset(config.dataset.path, categories=prompt_fields(config))
    assert "sample 'env-01': missing field 'answer', which the judge prompts of category '环境' use " \
           "({extra[answer]})" in str(e.value) and "env-02" in str(e.value) and "phys-01" not in str(e.value)


@pytest.mark.parametrize("changes", [{"edit.true_cfg_scale": float("nan")}, {"edit.true_cfg_scale": float("inf")},
                                     {"edit.lora": [{"path": "some/hub-lora", "scale": float("-inf")}]}])
def test_a_number_that_is_not_finite_is_refused_at_its_key(tmp_path, changes):
    # YAML's .nan and .inf are floats; JSON has no way to write them, so the resolved config could not be recorded.
    keypath = {"edit.true_cfg_scale": "edit.true_cfg_scale", "edit.lora": "edit.lora[0].scale"}[next(iter(changes))]
    assert f"{keypath}: must be a finite number, got " in _error(tmp_path, changes=changes)


def test_a_number_that_is_not_finite_is_refused_from_the_command_line(tmp_path):
    from shards.config import overrides_from_args, stage_argument_parser

    args = stage_argument_parser("x", "x").parse_args(["--config", "c", "--set", "edit.true_cfg_scale=.nan"])
    with pytest.raises(ConfigError, match=r"edit.true_cfg_scale: must be a finite number, got nan"):
        load_config(write_config(tmp_path), overrides_from_args(args))


TEMPLATE_KEY = "score.prompts.环境.dimensions.score.user_prompt_template"


@pytest.mark.parametrize("template, expected", [
    ("Do {id!x}.", "'{id!x}': unknown conversion '!x' (use !s, !r or !a, or none)"),
    ("Do {extra[human_score]:d}.", "'{extra[human_score]:d}': a format spec on a sample's own field"),
    ("Do {extra[human_score]!r:>5}.", "'{extra[human_score]!r:>5}': a format spec on a sample's own field"),
    ("Do {id:>100000000}.", "'{id:>100000000}': a width over 256 characters"),
    ("Do {instruction:d}.", "'{instruction:d}': format spec 'd' does not apply to text"),
    ("Do {instruction:{category}}.", "'{instruction:{category}}': a placeholder inside a format spec"),
    ("Do {extra[0]}.", "'{extra[0]}': a key of digits"),
])
def test_a_template_that_would_fail_when_a_prompt_is_made_is_refused_at_load(tmp_path, template, expected):
    message = _error(tmp_path, changes={TEMPLATE_KEY: template + " Score: X"})
    assert f"{TEMPLATE_KEY}: placeholder {expected}" in message


def test_conversions_and_bounded_format_specs_on_text_are_accepted(tmp_path):
    from score_stage.chat import template_fields

    template = "{id!r} {category:>12} {instruction:.300} {description!s:^20} {extra[answer]!a}. Score: X"
    config = load_config(write_config(tmp_path, {TEMPLATE_KEY: template}))
    made = config.score.prompts["环境"].dimensions["score"].user_prompt_template.format(**template_fields(
        {"id": "e1", "category": "环境", "instruction": "melt it", "extra": {"answer": "水"}}))
    assert made == "'e1'           环境 melt it " + " " * 20 + " '\\u6c34'. Score: X"


def _config_text(tmp_path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_key_written_twice_is_refused_with_both_lines_not_silently_the_last(tmp_path):
    text = open(write_config(tmp_path), encoding="utf-8").read().replace("  seed: 0\n", "  seed: 0\n  seed: 7\n")
    with pytest.raises(ConfigError) as info:
        load_config(_config_text(tmp_path, text))
    assert "the key 'seed' appears twice" in str(info.value) and "line" in str(info.value)
    # A category's prompts pasted twice under one name: the first block was lost without a word.
    text = text.replace("  seed: 7\n", "").replace("\n    社会:", "\n    环境:\n      system_prompt: x\n    社会:")
    with pytest.raises(ConfigError, match="the key '环境' appears twice"):
        load_config(_config_text(tmp_path, text))


def test_a_merge_key_may_still_be_overridden_by_the_mapping_it_merges_into(tmp_path):
    text = open(write_config(tmp_path), encoding="utf-8").read()
    text = text.replace("\nedit:\n", "\nbase: &base\n  seed: 3\n  samples_per_shard: 5\nedit:\n  <<: *base\n", 1)
    with pytest.raises(ConfigError, match="base: unknown key"):             # the anchor's own key is still unknown
        load_config(_config_text(tmp_path, text))


@pytest.mark.parametrize("written, name", [("on", "on"), ("no", "no"), ("null", "null"), ("010", "010"),
                                           ("1", "1"), ("1.50", "1.50"), ("2024-01-01", "2024-01-01")])
def test_a_category_key_is_the_text_written_not_what_yaml_reads_it_as(tmp_path, written, name):
    # YAML 1.1 reads `on:` as True and `010:` as 8: the category would have been 'True' or '8'.
    text = open(write_config(tmp_path), encoding="utf-8").read().replace("\n    环境:", f"\n    {written}:", 1)
    config = load_config(_config_text(tmp_path, text), {"dataset.categories": None})
    assert name in config.score.prompts and "True" not in config.score.prompts


def test_yaml_nested_too_deep_is_named_not_a_traceback(tmp_path):
    text = open(write_config(tmp_path), encoding="utf-8").read() + "deep: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError, match="cannot read config: nested too deep"):
        load_config(_config_text(tmp_path, text))
    from shards.config import overrides_from_args, stage_argument_parser

    args = stage_argument_parser("x", "x").parse_args(["--config", "c", "--set", "x=" + "[" * 5000 + "]" * 5000])
    with pytest.raises(ConfigError, match="--set x=.*nested too deep"):
        overrides_from_args(args)


SERVED = os.path.join(REPO, "configs", "demo-served.yaml")


@pytest.mark.parametrize("changes, expected", [
    ({"score.backend": "server"}, "score.server: required with score.backend: server"),
    ({"score.server": {"url": "http://h:1/v1"}}, "score.server: only used with score.backend: server"),
    ({"score.backend": "server", "score.server": {"url": "http://h:1/v1", "start": {}}},
     "score.server: give either url (a running server or API) or start"),
    ({"score.backend": "server", "score.server": {"url": "h:1/v1"}}, "score.server.url: expected http://HOST"),
    ({"score.backend": "server", "score.server": {"url": "http://h:1/v1", "api_key_env": "sk-abc123"}},
     "score.server.api_key_env: the NAME of an environment variable"),
    ({"score.backend": "server", "score.server": {"url": "http://h:1/v1", "max_concurrency": 0}},
     "score.server.max_concurrency: must be positive"),
    ({"score.backend": "server", "score.server": {"start": {"port": 70000}}}, "score.server.start.port: not a port"),
    ({"score.backend": "server", "score.server": {"start": {}}, "distributed.device": "auto"},
     "distributed.device: set cuda or cpu when the launcher starts the judge server"),
    ({"score.backend": "server", "score.server": {"start": {"args": ["--dtype", "float16"]}}},
     "score.server.start.args: --dtype is the launcher's to set (from score.dtype)"),
    ({"score.backend": "server", "score.server": {"start": {"args": ["--enforce-eager", "--port=9000"]}}},
     "score.server.start.args: --port is the launcher's to set (from score.server.start.port)"),
    ({"score.backend": "server", "score.server": {"start": {"args": ["--served-model-name", "gpt-4.1"]}}},
     "score.server.start.args: --served-model-name is the launcher's to set (from score.model)"),
    ({"score.backend": "server", "score.server": {"url": "https://user:sk-abc123@api.example.com/v1"}},
     "score.server.url: holds credentials (user:password@)"),
    ({"score.image_max_side": 8}, "score.image_max_side: must be at least 32"),
    ({"score.backend": "served"}, "score.backend: 'served' is not one of ['transformers', 'server']"),
])
def test_a_served_judges_settings_are_checked_at_load(tmp_path, changes, expected):
    assert expected in _error(tmp_path, changes=changes)


def test_the_served_demo_starts_vllms_cpu_build_from_its_own_environment():
    config = load_config(SERVED)
    server = config.score.server
    assert config.score.backend == "server" and server.url is None and server.start.engine == "vllm"
    assert server.start.env.venv == os.path.join(REPO, ".envs", "serve-cpu") and server.start.env.extras == ["serve-cpu"]
    gpu = load_config(SERVED, {"distributed.device": "cuda"})
    assert gpu.score.server.start.env.venv == os.path.join(REPO, ".envs", "serve")


def test_how_fast_and_how_many_at_once_are_not_what_a_served_run_is(tmp_path):
    from shards.folder.identity import run_identity

    base = run_identity(load_config(SERVED, {"output_dir": str(tmp_path)}), "score")
    faster = run_identity(load_config(SERVED, {"output_dir": str(tmp_path), "score.server.max_concurrency": 64,
                                               "score.server.start.args": ["--data-parallel-size", "8"]}), "score")
    assert base == faster
    assert base["score.server host"] == "the launcher's vLLM on each node"
    hosted = run_identity(load_config(SERVED, {"output_dir": str(tmp_path), "score.server": {
        "url": "https://api.example.com/v1"}}), "score", served_model="gpt-x-2026-01-01")
    assert hosted["score.server host"] == "api.example.com"
    assert hosted["score.model as the server reports it"] == "gpt-x-2026-01-01"


def test_a_served_run_resumed_with_another_way_of_reading_its_scores_is_refused(tmp_path):
    # A hosted judge's expected scores read from its 20 likeliest tokens, resumed reading 5 (a digit not among them
    # counts as 0): the two halves' scores would not be the same measure.
    from shards.folder.identity import check_identity, run_identity
    from shards.folder.records import ResumeError, begin_attempt

    config = load_config(SERVED, {"output_dir": str(tmp_path), "score.server": {"url": "https://api.example.com/v1"}})
    before = run_identity(config, "score", "gpt-x", reading="the likeliest 20 tokens where the written score begins")
    begin_attempt(str(tmp_path), "score", before, world_size=1)
    now = run_identity(config, "score", "gpt-x", reading="the likeliest 5 tokens where the written score begins")
    with pytest.raises(ResumeError, match='score.reading as the server allows it: was "the likeliest 20'):
        check_identity(str(tmp_path), "score", now)
    assert check_identity(str(tmp_path), "score", before) == []

"""The run configuration: typed dataclasses loaded from one YAML file, validated before any model loads.

Both stages and the launcher load the same file through `load_config`, so a typo is reported once, up front,
with the file, the key path and the nearest valid key. The dataclasses are defined in `shards.config_schema` and
imported from here. Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import string
import urllib.parse
from typing import Any

import yaml

from shards.config_schema import REPO_ROOT  # noqa: F401 (re-exported: the config's types are imported from here)
from shards.config_schema import (SINGLE_DIMENSION, TEMPLATE_FIELDS, CategoryPrompts, DatasetConfig, Dimension,
                                  DistributedConfig, EditConfig, EditSpeed, Environment, LoraAdapter, RunConfig,
                                  ScoreConfig, ServerConfig, ServerStart, SweepCheckpoint, SweepConfig)
from shards.editors import FAMILIES, FAMILY_SETTINGS, family_problem
from shards.files import safetensors_names
from shards.typed_data import ConfigError, build, quote, where
from shards.typed_yaml import load_yaml, set_dotted

EXTRA_FIELD = re.compile(r"extra\[([^\]]+)\]")   # a sample's own field in a template: {extra[reference]}
TEXT_SPEC = re.compile(r"(?:.?[<>^])?0?(\d*)(?:\.\d+)?s?", re.DOTALL)  # a text field's format spec; group 1: width
MAX_WIDTH = 256      # {id:>100000000} would make every prompt 100 MB; no prompt field needs padding this wide


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read, validate and resolve a config file.

    Args:
        path: YAML file.
        overrides: Dotted key paths (e.g. "dataset.limit") to values that replace the file's.

    Raises:
        ConfigError: naming the file, the key path and, for a misspelling, the nearest valid key.
    """
    source = os.path.abspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            raw = load_yaml(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{source}: cannot read config: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value, source)
    config = build(RunConfig, raw, source, set_by_loader=("source",))
    config = _check_prompts(dataclasses.replace(config, source=source))
    _check(config)
    config = _resolve_paths(config)
    _check_lora(config)
    return config


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-ready data, written next to the outputs (prompts as `dimensions`)."""
    data = dataclasses.asdict(config)
    for prompts in data["score"]["prompts"].values():
        for key in ("system_prompt", "user_prompt_template", "images"):
            del prompts[key]  # always empty once loaded: the inline form is held in `dimensions`
    return data


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags the launcher and both stages share (the launcher passes them on to its stages as given): they
    override the config (`overrides_from_args`) and are recorded with it."""
    parser.add_argument("--config", required=True, help="run config (YAML)")
    parser.add_argument("--output-dir", help="output folder (default: the config's output_dir)")
    parser.add_argument("--categories", nargs="+", help="run only these categories")
    parser.add_argument("--limit", type=int, help="run only the first N selected samples")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="set a config key for this run, e.g. --set score.mode=generate (repeatable; the value "
                             "is read as YAML)")


def run_arguments(args: argparse.Namespace, config: RunConfig) -> list[str]:
    """`add_run_arguments`' flags as given, for a stage the launcher starts: the config by its path, and the output
    folder resolved."""
    argv = ["--config", config.source, "--output-dir", config.output_dir]
    argv += ["--categories", *args.categories] if args.categories else []
    argv += ["--limit", str(args.limit)] if args.limit is not None else []
    return argv + [item for setting in args.settings for item in ("--set", setting)]


def stage_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line both stages share: the run's flags, and `--restart` of this stage."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_run_arguments(parser)
    parser.add_argument("--restart", action="store_true",
                        help="discard this stage's work in the output folder (and what was computed from it) "
                             "and start over, instead of resuming")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`stage_argument_parser` flags as `load_config` overrides (an output dir is relative to the cwd).

    Raises:
        ConfigError: for a `--set` that is not KEY=VALUE.
    """
    overrides = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set score.mode=generate")
        try:
            overrides[key.strip()] = load_yaml(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: the value is not valid YAML: {e}") from None
    flags = {"dataset.categories": args.categories, "dataset.limit": args.limit,
             "output_dir": os.path.abspath(args.output_dir) if args.output_dir else None}
    return {**overrides, **{k: v for k, v in flags.items() if v is not None}}


def _check(config: RunConfig) -> None:
    """Rules between fields, each reported at its key path."""
    src, edit, dist = config.source, config.edit, config.distributed
    for stage in ("edit", "score"):
        env = getattr(config, stage).env
        chosen = [k for k in ("python", "conda", "venv") if getattr(env, k)]
        if len(chosen) > 1:
            raise ConfigError(f"{where(src, stage + '.env')}: set only one of python, conda, venv (got {chosen})")
        for key in ("extras", "torch_index"):
            if getattr(env, key) and (env.python or env.conda):
                raise ConfigError(f"{where(src, f'{stage}.env.{key}')}: only used when the launcher builds a venv")
    if edit.true_cfg_scale > 1 and edit.negative_prompt is None:
        raise ConfigError(
            f"{where(src, 'edit.negative_prompt')}: required when true_cfg_scale > 1; without it the pipeline "
            "silently runs without CFG (use \" \" for an empty negative prompt)"
        )
    _check_family(config)
    positive = {"edit.samples_per_shard": edit.samples_per_shard, "score.batch_size": config.score.batch_size,
                "score.max_new_tokens": config.score.max_new_tokens, "distributed.nproc_per_node": dist.nproc_per_node,
                "distributed.timeout_s": dist.timeout_s, "distributed.rendezvous_timeout_s": dist.rendezvous_timeout_s}
    optional = {"dataset.limit": config.dataset.limit, "distributed.stage_timeout_s": dist.stage_timeout_s}
    positive.update({k: v for k, v in optional.items() if v is not None})
    for keypath, value in positive.items():
        if value < 1:
            raise ConfigError(f"{where(src, keypath)}: must be at least 1, got {value}")
    _check_categories(config)
    _check_server(config)


def _check_family(config: RunConfig) -> None:
    """The editor family's own rules: its settings only, its step and size limits, its speed options."""
    src, edit = config.source, config.edit
    family = FAMILIES[edit.pipeline]
    if edit.num_inference_steps < family.min_steps:
        raise ConfigError(f"{where(src, 'edit.num_inference_steps')}: must be at least {family.min_steps} for "
                          f"{edit.pipeline} (fewer steps give NaN images with its scheduler)")
    for key in FAMILY_SETTINGS:
        problem = family_problem(edit.pipeline, key) if getattr(edit, key) is not None else None
        if problem:
            raise ConfigError(f"{where(src, 'edit.' + key)}: {problem}")
    if "guidance_scale" in family.settings and edit.guidance_scale is None:
        raise ConfigError(f"{where(src, 'edit.guidance_scale')}: required for {edit.pipeline}: its distilled "
                          "guidance, an input of the transformer (the model card uses 2.5)")
    for key in ("height", "width"):
        value, step = getattr(edit, key), family.size_multiple
        if value is not None and (value <= 0 or value % step):
            raise ConfigError(f"{where(src, 'edit.' + key)}: must be a positive multiple of {step} for "
                              f"{edit.pipeline}, got {value}")
    positive = {"output_resolution": edit.output_resolution, "max_sequence_length": edit.max_sequence_length}
    for key, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"{where(src, 'edit.' + key)}: must be at least 1, got {value}")
    for option, value in dataclasses.asdict(edit.speed).items():
        if value and option not in family.speed:
            raise ConfigError(f"{where(src, 'edit.speed.' + option)}: does not apply to {edit.pipeline} (its "
                              f"options: {', '.join(family.speed)})")


def _check_server(config: RunConfig) -> None:
    """The `server` backend's settings: an endpoint to send to (a URL, or a server the launcher starts), sane
    limits, and the name of the key's environment variable rather than a key."""
    src, score = config.source, config.score
    if score.image_max_side is not None and score.image_max_side < 32:
        raise ConfigError(f"{where(src, 'score.image_max_side')}: must be at least 32 pixels, got {score.image_max_side}")
    if score.backend == "transformers":
        if score.server is not None:
            raise ConfigError(f"{where(src, 'score.server')}: only used with score.backend: server")
        return
    server = score.server
    if server is None:
        raise ConfigError(f"{where(src, 'score.server')}: required with score.backend: server (a url, or start)")
    if (server.url is None) == (server.start is None):
        raise ConfigError(f"{where(src, 'score.server')}: give either url (a running server or API) or start (the "
                          "launcher starts one on each node), not both")
    if server.url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", server.url):
        raise ConfigError(f"{where(src, 'score.server.url')}: expected http://HOST[:PORT]/PATH or https://..., got "
                          f"{quote(server.url)}")
    if server.url is not None and "@" in urllib.parse.urlsplit(server.url).netloc:
        raise ConfigError(f"{where(src, 'score.server.url')}: holds credentials (user:password@), which would be "
                          "logged with it; put the key in the variable score.server.api_key_env names")
    if server.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", server.api_key_env):
        raise ConfigError(f"{where(src, 'score.server.api_key_env')}: the NAME of an environment variable that holds "
                          "the key (e.g. OPENAI_API_KEY), never the key itself")
    limits = {"max_concurrency": server.max_concurrency, "timeout_s": server.timeout_s,
              "top_logprobs": server.top_logprobs, "requests_per_minute": server.requests_per_minute}
    if server.start is not None:
        limits.update({"start.port": server.start.port, "start.ready_timeout_s": server.start.ready_timeout_s,
                       "start.gpus": server.start.gpus})
        if not 1 <= server.start.port <= 65535:
            raise ConfigError(f"{where(src, 'score.server.start.port')}: not a port: {server.start.port}")
        if config.distributed.device == "auto":
            raise ConfigError(f"{where(src, 'distributed.device')}: set cuda or cpu when the launcher starts the "
                              "judge server: it picks the server's environment (vllm, or the CPU build) by it")
        _check_start_args(src, server.start.args)
    for key, value in limits.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{where(src, 'score.server.' + key)}: must be positive, got {value}")
    if server.retries < 0:
        raise ConfigError(f"{where(src, 'score.server.retries')}: must be 0 or more, got {server.retries}")


# The engine arguments the launcher sets itself, each from the setting that is part of what a run is (or where
# the launcher looks for the server): given again in start.args, the engine would take the last one, unrecorded.
LAUNCHER_SET_ARGS = {"--model": "score.model", "--served-model-name": "score.model", "--dtype": "score.dtype",
                     "--trust-remote-code": "score.trust_remote_code", "--host": "127.0.0.1, this node's own",
                     "--port": "score.server.start.port"}


def _check_start_args(src: str, args: list[str]) -> None:
    for arg in args:
        name = str(arg).split("=", 1)[0]
        if name in LAUNCHER_SET_ARGS:
            raise ConfigError(f"{where(src, 'score.server.start.args')}: {name} is the launcher's to set (from "
                              f"{LAUNCHER_SET_ARGS[name]}); remove it from the engine's arguments")


def _check_lora(config: RunConfig) -> None:
    """A local adapter (an absolute path once resolved) must exist, and so must its weights file."""
    for i, adapter in enumerate(config.edit.lora):
        at = where(config.source, f"edit.lora[{i}]")
        if not os.path.isabs(adapter.path):
            continue                                    # a hub id: fetched when the pipeline loads
        if not os.path.exists(adapter.path):
            raise ConfigError(f"{at}.path: no such file or folder: {adapter.path}")
        if adapter.weight_name and os.path.isdir(adapter.path) and \
                not os.path.isfile(os.path.join(adapter.path, adapter.weight_name)):
            raise ConfigError(f"{at}.weight_name: {adapter.weight_name} is not in {adapter.path}")
        problem = _not_a_lora(adapter)
        if problem:
            raise ConfigError(f"{at}.path: {problem}")


def _not_a_lora(adapter: LoraAdapter) -> str | None:
    """Why a local adapter's safetensors file is no LoRA (unreadable, not safetensors, no tensor named like a
    LoRA's), found here rather than when the editor loads it, perhaps hours into a sweep; None when it may be."""
    weights = adapter.path
    if os.path.isdir(weights):
        found = [n for n in os.listdir(weights) if n.endswith(".safetensors")]
        name = adapter.weight_name or ("pytorch_lora_weights.safetensors" if "pytorch_lora_weights.safetensors"
                                       in found else found[0] if len(found) == 1 else None)
        weights = os.path.join(weights, name) if name else None
    if weights is None or not weights.endswith(".safetensors"):
        return None                                     # diffusers picks among several, or reads another format
    try:
        names = safetensors_names(weights)
    except (OSError, ValueError) as e:
        return f"{weights}: not a LoRA adapter: {e}"
    if not any("lora" in name.lower() for name in names):
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        return f"{weights}: not a LoRA adapter: none of its {len(names)} tensors is a LoRA's ({shown or 'none'})"
    return None


def _check_prompts(config: RunConfig) -> RunConfig:
    """Check each category's prompts in the form it was written, and return them all as `dimensions`."""
    src, prefix = config.source, config.score.answer_prefix
    if not prefix.strip():
        raise ConfigError(f"{where(src, 'score.answer_prefix')}: must contain text, e.g. 'Score: '")
    normalized = {}
    for category, prompts in config.score.prompts.items():
        at = f"score.prompts.{category}"
        inline = {k: getattr(prompts, k) for k in ("system_prompt", "user_prompt_template", "images")
                  if getattr(prompts, k) is not None}
        if prompts.dimensions is None:
            for key in ("system_prompt", "user_prompt_template"):
                if key not in inline:
                    raise ConfigError(f"{where(src, f'{at}.{key}')}: missing required key '{key}' "
                                      "(or give several under 'dimensions')")
            if prompts.combine is not None:
                raise ConfigError(f"{where(src, at + '.combine')}: only used with several 'dimensions'")
            dimensions, paths = {SINGLE_DIMENSION: Dimension(**inline)}, {SINGLE_DIMENSION: at}
        elif inline:
            raise ConfigError(f"{where(src, at)}: give either {', '.join(inline)} (one dimension) or "
                              "'dimensions', not both")
        else:
            if len(prompts.dimensions) > 1 and prompts.combine is None:
                raise ConfigError(f"{where(src, at + '.combine')}: required with several dimensions "
                                  "(min, mean or geometric_mean)")
            dimensions = prompts.dimensions
            paths = {name: f"{at}.dimensions.{name}" for name in dimensions}
        for name, dimension in dimensions.items():
            _check_template(dimension.user_prompt_template, src, f"{paths[name]}.user_prompt_template")
            if prefix + "X" not in dimension.system_prompt + dimension.user_prompt_template:
                raise ConfigError(
                    f"{where(src, paths[name])}: neither prompt asks for the answer format '{prefix}X' "
                    "(score.answer_prefix, then X for the score), which both scoring modes read")
        normalized[category] = CategoryPrompts(dimensions=dimensions, combine=prompts.combine or "mean")
    return dataclasses.replace(config, score=dataclasses.replace(config.score, prompts=normalized))


def environment_name(extras: list[str], torch_index: str | None) -> str:
    """What an environment built from these extras is called: its venv's folder under `.envs/` when the config
    names none, and its lock file (`score+test`, `edit@cu126`). Two configs share a venv only when they install
    the same things, so one never rebuilds another's."""
    name = "+".join(sorted(extras)) or "base"
    return name + ("@" + torch_index.rstrip("/").rsplit("/", 1)[-1] if torch_index else "")


def template_names(template: str) -> list[str]:
    """The placeholders of a prompt template, as written (`instruction`, `extra[reference]`)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _check_template(template: str, source: str, keypath: str) -> None:
    """Every placeholder names a known field, and formats every value that field can hold: a template that fails
    for some sample would fail after the judge loaded, hours into a run."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:
        raise ConfigError(f"{where(source, keypath)}: not a valid template: {e}") from None
    for name, spec, conversion in fields:
        _check_placeholder_name(name, source, keypath)
        problem = _placeholder_problem(name, spec, conversion)
        if problem:
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(f"{where(source, keypath)}: placeholder '{written}': {problem}")


def _check_placeholder_name(name: str, source: str, keypath: str) -> None:
    if name.startswith("extra") and EXTRA_FIELD.fullmatch(name):
        return
    if name not in TEMPLATE_FIELDS or name == "extra":
        near = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1, cutoff=0.5)
        hint = f"; did you mean '{{{near[0]}}}'?" if near and near[0] != "extra" else ""
        raise ConfigError(
            f"{where(source, keypath)}: unknown placeholder '{{{name}}}'{hint} (available: "
            f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS if f != 'extra')}, and {{extra[KEY]}} for a "
            "sample's other fields)"
        )


def _placeholder_problem(name: str, spec: str, conversion: str | None) -> str | None:
    """Why a placeholder would fail (or pad a prompt without bound) when a prompt is made, or None.

    The named fields are text; a sample's own field (`extra[KEY]`) may be text, a number, a list or a mapping, and a
    format spec that fits one of those fails on another, so only text fields take a spec."""
    if conversion not in (None, "s", "r", "a"):
        return f"unknown conversion '!{conversion}' (use !s, !r or !a, or none)"
    extra = EXTRA_FIELD.fullmatch(name)
    if extra and extra.group(1).isdigit():
        return "a key of digits is read by Python's format as a list index, not as the field's name: rename the field"
    if not spec:
        return None
    if "{" in spec:
        return "a placeholder inside a format spec is not supported"
    if extra:
        return ("a format spec on a sample's own field is not supported: its value may be text, a number or a list, "
                "and a spec that fits one fails on another; write the value in the dataset as it should read")
    width = TEXT_SPEC.fullmatch(spec)
    if width and width.group(1) and int(width.group(1)) > MAX_WIDTH:
        return f"a width over {MAX_WIDTH} characters pads the prompt with blanks (at most {MAX_WIDTH})"
    try:
        format("text", spec)
    except ValueError as e:
        return f"format spec '{spec}' does not apply to text ({e})"
    return None


def prompt_fields(config: RunConfig) -> dict[str, list[str]]:
    """Each category with judge prompts, and the sample fields beyond the required ones its templates use
    (`{extra[reference]}`): a sample of that category without one is refused when the dataset loads."""
    return {category: sorted({match.group(1) for dimension in prompts.dimensions.values()
                              for name in template_names(dimension.user_prompt_template)
                              if (match := EXTRA_FIELD.fullmatch(name))})
            for category, prompts in config.score.prompts.items()}


def _check_categories(config: RunConfig) -> None:
    known = list(config.score.prompts)
    for i, category in enumerate(config.dataset.categories or []):
        if category not in known:
            near = difflib.get_close_matches(category, known, n=1, cutoff=0.3)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(
                f"{where(config.source, f'dataset.categories[{i}]')}: unknown category '{category}'{hint} "
                f"(categories with prompts: {', '.join(known)})"
            )


def _resolve_paths(config: RunConfig) -> RunConfig:
    base = os.path.dirname(config.source)

    def path(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    def env(e: Environment, extra: str) -> Environment:
        if not (e.python or e.conda or e.venv):
            extras = e.extras or [extra]
            return dataclasses.replace(e, venv=os.path.join(REPO_ROOT, ".envs", environment_name(extras, e.torch_index)),
                                       extras=extras)
        python = path(e.python) if e.python and os.sep in e.python else e.python
        return dataclasses.replace(e, python=python, venv=path(e.venv) if e.venv else None)

    def model(m: str, tiny: bool) -> str:
        local = path(m)
        return local if tiny or os.path.exists(local) or m.startswith((".", "/", "~")) else m

    edit, score = config.edit, config.score
    lora = [dataclasses.replace(a, path=model(a.path, False)) for a in edit.lora]
    server = score.server
    if server is not None and server.start is not None:
        serve = "serve-cpu" if config.distributed.device == "cpu" else "serve"
        server = dataclasses.replace(server, start=dataclasses.replace(server.start, env=env(server.start.env, serve)))
    return dataclasses.replace(
        config,
        output_dir=path(config.output_dir),
        dataset=dataclasses.replace(config.dataset, path=path(config.dataset.path)),
        edit=dataclasses.replace(edit, env=env(edit.env, FAMILIES[edit.pipeline].extra), model=model(edit.model, edit.build_tiny),
                                 lora=lora),
        score=dataclasses.replace(score, env=env(score.env, "score"), model=model(score.model, score.build_tiny),
                                  server=server),
    )

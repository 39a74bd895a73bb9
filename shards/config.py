"""The run configuration: typed dataclasses loaded from one YAML file, validated before any model loads.

Both stages and the launcher load the same file through `load_config`, so a typo is reported once, up front,
with the file, the key path and the nearest valid key. The dataclasses are defined in `shards.config_schema` and
imported from here; the prompts' own checks are in `shards.config_prompts`, the protocols' in
`shards.config_protocol`, the editor families' in `shards.editors`. Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import urllib.parse
from typing import Any

import yaml

from shards.config_prompts import check_categories, check_prompts
from shards.config_protocol import check_official_prompts, check_protocol_keys, judged_categories  # noqa: F401
from shards.config_schema import REPO_ROOT  # noqa: F401 (re-exported: the config's types are imported from here)
from shards.config_schema import (SINGLE_DIMENSION, TEMPLATE_FIELDS, CategoryPrompts, DatasetConfig, Dimension,
                                  DistributedConfig, EditConfig, EditSpeed, Environment, LoraAdapter, RunConfig,
                                  ScoreConfig, ServerConfig, ServerStart, SweepCheckpoint, SweepConfig)
from shards.editors import FAMILIES, check_family
from shards.files import safetensors_names
from shards.typed_data import ConfigError, build, quote, where
from shards.typed_yaml import load_yaml, set_dotted


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
    config = dataclasses.replace(build(RunConfig, raw, source, set_by_loader=("source",)), source=source)
    check_protocol_keys(config)
    config = check_prompts(config)
    _check(config)
    config = _resolve_paths(config)
    _check_lora(config)
    check_official_prompts(config)
    return config


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-ready data, written next to the outputs (prompts as `dimensions`)."""
    data = dataclasses.asdict(config)
    for prompts in (data["score"]["prompts"] or {}).values():
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
    check_family(config)
    positive = {"edit.samples_per_shard": edit.samples_per_shard, "score.batch_size": config.score.batch_size,
                "score.max_new_tokens": config.score.max_new_tokens, "distributed.nproc_per_node": dist.nproc_per_node,
                "distributed.timeout_s": dist.timeout_s, "distributed.rendezvous_timeout_s": dist.rendezvous_timeout_s}
    optional = {"dataset.limit": config.dataset.limit, "distributed.stage_timeout_s": dist.stage_timeout_s}
    positive.update({k: v for k, v in optional.items() if v is not None})
    for keypath, value in positive.items():
        if value < 1:
            raise ConfigError(f"{where(src, keypath)}: must be at least 1, got {value}")
    check_categories(config)
    _check_server(config)


def _check_server(config: RunConfig) -> None:
    """The `server` backend's settings: an endpoint to send to (a URL, or a server the launcher starts), sane
    limits, and the name of the key's environment variable rather than a key."""
    src, score = config.source, config.score
    if score.image_max_side is not None and score.image_max_side < 32:
        raise ConfigError(f"{where(src, 'score.image_max_side')}: must be at least 32 pixels, "
                          f"got {score.image_max_side}")
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


def environment_name(extras: list[str], torch_index: str | None) -> str:
    """What an environment built from these extras is called: its venv's folder under `.envs/` when the config
    names none, and its lock file (`score+test`, `edit@cu126`). Two configs share a venv only when they install
    the same things, so one never rebuilds another's."""
    name = "+".join(sorted(extras)) or "base"
    return name + ("@" + torch_index.rstrip("/").rsplit("/", 1)[-1] if torch_index else "")


def _resolve_paths(config: RunConfig) -> RunConfig:
    base = os.path.dirname(config.source)

    def path(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    def env(e: Environment, extra: str) -> Environment:
        if not (e.python or e.conda or e.venv):
            extras = e.extras or [extra]
            venv = os.path.join(REPO_ROOT, ".envs", environment_name(extras, e.torch_index))
            return dataclasses.replace(e, venv=venv, extras=extras)
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
        edit=dataclasses.replace(edit, env=env(edit.env, FAMILIES[edit.pipeline].extra),
                                 model=model(edit.model, edit.build_tiny), lora=lora),
        score=dataclasses.replace(score, env=env(score.env, "score"), model=model(score.model, score.build_tiny),
                                  server=server),
    )

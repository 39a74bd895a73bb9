"""The run configuration: typed dataclasses loaded from one YAML file, validated before any model loads.

Both stages and the launcher load the same file through `load_config`, so a typo is reported once, up front,
with the file, the key path and the nearest valid key. Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import string
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

Dtype = Literal["bfloat16", "float16", "float32"]
ImagesShown = Literal["edited", "original_and_edited"]
CombineRule = Literal["min", "mean", "geometric_mean"]
SINGLE_DIMENSION = "score"  # the name of the one dimension of a category given in the inline form
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE_FIELDS = ("id", "category", "instruction", "description")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


@dataclass(frozen=True, kw_only=True)
class Environment:
    """Where a stage's Python interpreter comes from: at most one of `python`, `conda`, `venv`.

    With none set, the stage gets a venv at `.envs/<stage>` in the repository with the `<stage>` extra.
    """

    python: str | None = None
    """Path of an existing interpreter."""
    conda: str | None = None
    """Name of an existing conda environment."""
    venv: str | None = None
    """Folder of a virtual environment the launcher creates with venv + pip on first use."""
    extras: list[str] = field(default_factory=list)
    """Extras of this project installed into `venv`; their pinned requirements live in pyproject.toml."""


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """The benchmark: a JSONL file, one sample a line."""

    path: str
    """JSONL file; each sample's `image` is relative to this file's folder."""
    categories: list[str] | None = None
    """Run only these categories (None: all)."""
    limit: int | None = None
    """Run only the first N samples left after the category filter (None: all)."""
    skip_unreadable_images: bool = False
    """Record a sample whose image is missing or cannot be decoded as `failed` (with the reason, counted in the
    report) and run the rest; by default such a dataset is refused before any model loads."""


@dataclass(frozen=True, kw_only=True)
class EditConfig:
    """The edit stage: a diffusers Qwen-Image-Edit pipeline."""

    env: Environment = field(default_factory=Environment)
    """Interpreter of the edit environment (transformers 4.57.x + diffusers 0.39)."""
    model: str
    """Hub id or local folder of the diffusers checkpoint."""
    pipeline: Literal["QwenImageEditPipeline", "QwenImageEditPlusPipeline"]
    """Pipeline class: QwenImageEditPlusPipeline for the -2509/-2511 checkpoints."""
    build_tiny: bool = False
    """Demo and tests only: build a tiny random-weight pipeline at `model` first if it is missing."""
    trust_remote_code: bool = False
    """Let the checkpoint run its own Python code when it loads; leave off unless you trust its source."""
    dtype: Dtype = "bfloat16"
    """Weights' dtype on the device."""
    num_inference_steps: int
    """Denoising steps (at least 2: one step gives NaN images with the real scheduler)."""
    true_cfg_scale: float
    """True classifier-free guidance scale; above 1 it needs `negative_prompt`."""
    negative_prompt: str | None = None
    """Negative prompt; CFG runs only when it is set (even to a single space)."""
    height: int | None = None
    """Output height in pixels, a multiple of 16 (None: from the input image)."""
    width: int | None = None
    """Output width in pixels, a multiple of 16 (None: from the input image)."""
    seed: int = 0
    """Base seed; each sample's seed is derived from it and the sample id."""
    samples_per_shard: int = 16
    """Edited images per safetensors shard part. A part is closed (written and recorded) when full, so a crash
    redoes at most this many samples on the rank that crashed."""


@dataclass(frozen=True, kw_only=True)
class Dimension:
    """One judged aspect of an edit (e.g. instruction compliance, or visual quality), with its own prompts."""

    system_prompt: str
    """System message of the judge."""
    user_prompt_template: str
    """User message; may use {id}, {category}, {instruction} and {description}."""
    images: ImagesShown = "edited"
    """What the judge sees: the edited image alone, or the original and the edited image (labelled as the first
    and the second picture)."""


@dataclass(frozen=True, kw_only=True)
class CategoryPrompts:
    """How the judge is asked about one category.

    Either one dimension inline (`system_prompt`, `user_prompt_template`, optionally `images`), or several named
    `dimensions` and the `combine` rule that makes the sample's score from theirs. After loading, both forms are
    held in `dimensions` (the inline one under the name `score`).
    """

    system_prompt: str | None = None
    """Inline form: system message of the judge."""
    user_prompt_template: str | None = None
    """Inline form: user message; may use {id}, {category}, {instruction} and {description}."""
    images: ImagesShown | None = None
    """Inline form: what the judge sees (default: the edited image alone)."""
    dimensions: dict[str, Dimension] | None = None
    """Several dimensions, by name, each with its own prompts and images."""
    combine: CombineRule | None = None
    """How several dimensions' scores make the sample's score: min, mean or geometric_mean."""


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """The score stage: a Qwen3-VL judge through transformers."""

    env: Environment = field(default_factory=Environment)
    """Interpreter of the judge environment (transformers 5.x)."""
    model: str
    """Hub id or local folder of the judge checkpoint."""
    build_tiny: bool = False
    """Demo and tests only: build a tiny random-weight judge at `model` first if it is missing."""
    trust_remote_code: bool = False
    """Let the checkpoint run its own Python code when it loads; leave off unless you trust its source."""
    dtype: Dtype = "bfloat16"
    """Weights' dtype on the device."""
    mode: Literal["expected", "generate"] = "expected"
    """How a score is read. `expected`: the judge's next-token probabilities over 0..10 right after
    `answer_prefix`, reported as sum p(s)*s over the valid scores (two forward passes; never unparsed).
    `generate`: the judge writes its answer and the score is read from the text (`unparsed` if it has none)."""
    answer_prefix: str = "Score: "
    """Where the score begins in the judge's answer; every dimension's prompts must ask for it. `expected` mode
    writes it as the start of the answer and reads the score's probabilities right after it."""
    batch_size: int = 4
    """Judge queries (one per sample and dimension) in one forward batch."""
    max_new_tokens: int = 64
    """Longest judge answer in tokens (`generate` mode)."""
    prompts: dict[str, CategoryPrompts]
    """Judge prompts per category; its keys are the benchmark's categories."""


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """How the torchrun jobs are started."""

    nproc_per_node: int = 1
    """Ranks per stage, one per GPU (CPU: one process each)."""
    timeout_s: int = 1800
    """Timeout of collectives in seconds: how long a rank waits for the others at a barrier."""
    stage_timeout_s: int | None = None
    """The launcher stops a stage that runs longer than this many seconds (None: no limit)."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole benchmark run; relative paths are relative to the config file's folder."""

    output_dir: str
    """Folder of shards, manifest and report."""
    dataset: DatasetConfig
    """The benchmark."""
    edit: EditConfig
    """The edit stage."""
    score: ScoreConfig
    """The score stage."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """How the stages are started."""
    source: str = ""
    """The file this config was read from (set by the loader)."""


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
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{source}: cannot read config: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value, source)
    config = _build(RunConfig, raw, source, "")
    config = _check_prompts(dataclasses.replace(config, source=source))
    _check(config)
    return _resolve_paths(config)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-ready data, written next to the outputs (prompts as `dimensions`)."""
    data = dataclasses.asdict(config)
    for prompts in data["score"]["prompts"].values():
        for key in ("system_prompt", "user_prompt_template", "images"):
            del prompts[key]  # always empty once loaded: the inline form is held in `dimensions`
    return data


def stage_argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line both stages share; its flags override the config and are recorded with it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="run config (YAML)")
    parser.add_argument("--output-dir", help="output folder (default: the config's output_dir)")
    parser.add_argument("--categories", nargs="+", help="only these categories")
    parser.add_argument("--limit", type=int, help="only the first N selected samples")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="set a config key for this run, e.g. --set score.mode=generate (repeatable; the value "
                             "is read as YAML)")
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
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: the value is not valid YAML: {e}") from None
    flags = {"dataset.categories": args.categories, "dataset.limit": args.limit,
             "output_dir": os.path.abspath(args.output_dir) if args.output_dir else None}
    return {**overrides, **{k: v for k, v in flags.items() if v is not None}}


def _set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for i, key in enumerate(parents):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{_where(source, '.'.join(parents[: i + 1]))}: is not a mapping, so '{dotted}' "
                              "cannot be set")
    node[last] = value


def _where(source: str, keypath: str) -> str:
    return f"{source}: {keypath or '<top level>'}"


def _build(cls: type, raw: Any, source: str, keypath: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(source, keypath)}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields and not (cls is RunConfig and key == "source"):
            near = _nearest(str(key), [f for f in fields if f not in raw], list(fields))
            hint = f"; did you mean '{near}'?" if near else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{_where(source, _join(keypath, key))}: unknown key{hint}")
    values = {}
    for name, f in fields.items():
        sub = _join(keypath, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], source, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            near = difflib.get_close_matches(name, [str(k) for k in raw], n=1, cutoff=0.5)
            hint = f" (found '{near[0]}': a misspelling?)" if near else ""
            raise ConfigError(f"{_where(source, sub)}: missing required key '{name}'{hint}")
    return cls(**values)


def _nearest(key: str, missing: list[str], valid: list[str]) -> str | None:
    """The valid key `key` most likely misspells: a missing key it abbreviates (user_prompt ->
    user_prompt_template) first, then the closest missing key, then the closest of all."""
    prefixed = [m for m in missing if m.startswith(key) or key.startswith(m)]
    if prefixed:
        return min(prefixed, key=lambda m: abs(len(m) - len(key)))
    for pool in (missing, valid):
        near = difflib.get_close_matches(key, pool, n=1, cutoff=0.5)
        if near:
            return near[0]
    return None


def _join(keypath: str, key: Any) -> str:
    return f"{keypath}.{key}" if keypath else str(key)


def _convert(hint: Any, value: Any, source: str, keypath: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, source, keypath)
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
            hint_txt = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{_where(source, keypath)}: '{value}' is not one of {list(args)}{hint_txt}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{_where(source, keypath)}: expected a list, got {type(value).__name__}")
        return [_convert(args[0], v, source, f"{keypath}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{_where(source, keypath)}: expected a non-empty mapping")
        return {str(k): _convert(args[1], v, source, _join(keypath, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, keypath)
    return _scalar(hint, value, source, keypath)


def _scalar(hint: type, value: Any, source: str, keypath: str) -> Any:
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{_where(source, keypath)}: expected {hint.__name__}, got {value!r}")
    return value


def _check(config: RunConfig) -> None:
    """Rules between fields, each reported at its key path."""
    src, edit, dist = config.source, config.edit, config.distributed
    for stage in ("edit", "score"):
        env = getattr(config, stage).env
        chosen = [k for k in ("python", "conda", "venv") if getattr(env, k)]
        if len(chosen) > 1:
            raise ConfigError(f"{_where(src, stage + '.env')}: set only one of python, conda, venv (got {chosen})")
        if env.extras and not env.venv:
            raise ConfigError(f"{_where(src, stage + '.env.extras')}: extras are installed only into a venv")
    if edit.num_inference_steps < 2:
        raise ConfigError(f"{_where(src, 'edit.num_inference_steps')}: must be at least 2 (1 step gives NaN images)")
    if edit.true_cfg_scale > 1 and edit.negative_prompt is None:
        raise ConfigError(
            f"{_where(src, 'edit.negative_prompt')}: required when true_cfg_scale > 1; without it the pipeline "
            "silently runs without CFG (use \" \" for an empty negative prompt)"
        )
    for key in ("height", "width"):
        value = getattr(edit, key)
        if value is not None and (value <= 0 or value % 16):
            raise ConfigError(f"{_where(src, 'edit.' + key)}: must be a positive multiple of 16, got {value}")
    positive = {"edit.samples_per_shard": edit.samples_per_shard, "score.batch_size": config.score.batch_size,
                "score.max_new_tokens": config.score.max_new_tokens, "distributed.nproc_per_node": dist.nproc_per_node,
                "distributed.timeout_s": dist.timeout_s}
    optional = {"dataset.limit": config.dataset.limit, "distributed.stage_timeout_s": dist.stage_timeout_s}
    positive.update({k: v for k, v in optional.items() if v is not None})
    for keypath, value in positive.items():
        if value < 1:
            raise ConfigError(f"{_where(src, keypath)}: must be at least 1, got {value}")
    _check_categories(config)


def _check_prompts(config: RunConfig) -> RunConfig:
    """Check each category's prompts in the form it was written, and return them all as `dimensions`."""
    src, prefix = config.source, config.score.answer_prefix
    if not prefix.strip():
        raise ConfigError(f"{_where(src, 'score.answer_prefix')}: must contain text, e.g. 'Score: '")
    normalized = {}
    for category, prompts in config.score.prompts.items():
        where = f"score.prompts.{category}"
        inline = {k: getattr(prompts, k) for k in ("system_prompt", "user_prompt_template", "images")
                  if getattr(prompts, k) is not None}
        if prompts.dimensions is None:
            for key in ("system_prompt", "user_prompt_template"):
                if key not in inline:
                    raise ConfigError(f"{_where(src, f'{where}.{key}')}: missing required key '{key}' "
                                      "(or give several under 'dimensions')")
            if prompts.combine is not None:
                raise ConfigError(f"{_where(src, where + '.combine')}: only used with several 'dimensions'")
            dimensions, paths = {SINGLE_DIMENSION: Dimension(**inline)}, {SINGLE_DIMENSION: where}
        elif inline:
            raise ConfigError(f"{_where(src, where)}: give either {', '.join(inline)} (one dimension) or "
                              "'dimensions', not both")
        else:
            if len(prompts.dimensions) > 1 and prompts.combine is None:
                raise ConfigError(f"{_where(src, where + '.combine')}: required with several dimensions "
                                  "(min, mean or geometric_mean)")
            dimensions = prompts.dimensions
            paths = {name: f"{where}.dimensions.{name}" for name in dimensions}
        for name, dimension in dimensions.items():
            _check_template(dimension.user_prompt_template, src, f"{paths[name]}.user_prompt_template")
            if prefix + "X" not in dimension.system_prompt + dimension.user_prompt_template:
                raise ConfigError(
                    f"{_where(src, paths[name])}: neither prompt asks for the answer format '{prefix}X' "
                    "(score.answer_prefix, then X for the score), which both scoring modes read")
        normalized[category] = CategoryPrompts(dimensions=dimensions, combine=prompts.combine or "mean")
    return dataclasses.replace(config, score=dataclasses.replace(config.score, prompts=normalized))


def _check_template(template: str, source: str, keypath: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise ConfigError(f"{_where(source, keypath)}: not a valid template: {e}") from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            near = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1, cutoff=0.5)
            hint = f"; did you mean '{{{near[0]}}}'?" if near else ""
            raise ConfigError(
                f"{_where(source, keypath)}: unknown placeholder '{{{name}}}'{hint} "
                f"(available: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})"
            )


def _check_categories(config: RunConfig) -> None:
    known = list(config.score.prompts)
    for i, category in enumerate(config.dataset.categories or []):
        if category not in known:
            near = difflib.get_close_matches(category, known, n=1, cutoff=0.3)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(
                f"{_where(config.source, f'dataset.categories[{i}]')}: unknown category '{category}'{hint} "
                f"(categories with prompts: {', '.join(known)})"
            )


def _resolve_paths(config: RunConfig) -> RunConfig:
    base = os.path.dirname(config.source)

    def path(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    def env(e: Environment, stage: str) -> Environment:
        if not (e.python or e.conda or e.venv):
            return Environment(venv=os.path.join(REPO_ROOT, ".envs", stage), extras=[stage])
        python = path(e.python) if e.python and os.sep in e.python else e.python
        return dataclasses.replace(e, python=python, venv=path(e.venv) if e.venv else None)

    def model(m: str, tiny: bool) -> str:
        local = path(m)
        return local if tiny or os.path.exists(local) or m.startswith((".", "/", "~")) else m

    edit, score = config.edit, config.score
    return dataclasses.replace(
        config,
        output_dir=path(config.output_dir),
        dataset=dataclasses.replace(config.dataset, path=path(config.dataset.path)),
        edit=dataclasses.replace(edit, env=env(edit.env, "edit"), model=model(edit.model, edit.build_tiny)),
        score=dataclasses.replace(score, env=env(score.env, "score"), model=model(score.model, score.build_tiny)),
    )

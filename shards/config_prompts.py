"""The judge prompts of a config checked at load: each category's dimensions, the answer format they ask for,
and every placeholder of the user prompt templates (a field the samples have, a format spec that cannot blow a
prompt up), so a typo in a prompt stops the run before any model loads. Standard library only."""

from __future__ import annotations

import dataclasses
import difflib
import re
import string

from shards.config_protocol import judged_categories
from shards.config_schema import SINGLE_DIMENSION, TEMPLATE_FIELDS, CategoryPrompts, Dimension, RunConfig
from shards.typed_data import ConfigError, where

EXTRA_FIELD = re.compile(r"extra\[([^\]]+)\]")   # a sample's own field in a template: {extra[reference]}
TEXT_SPEC = re.compile(r"(?:.?[<>^])?0?(\d*)(?:\.\d+)?s?", re.DOTALL)  # a text field's format spec; group 1: width
MAX_WIDTH = 256      # {id:>100000000} would make every prompt 100 MB; no prompt field needs padding this wide


def check_prompts(config: RunConfig) -> RunConfig:
    """Check each category's prompts in the form it was written, and return them all as `dimensions`."""
    src, prefix = config.source, config.score.answer_prefix
    if not prefix.strip():
        raise ConfigError(f"{where(src, 'score.answer_prefix')}: must contain text, e.g. 'Score: '")
    if config.score.prompts is None:          # the official protocol: the benchmark's own prompts
        return config
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
    (`{extra[reference]}`): a sample of that category without one is refused when the dataset loads. The official
    protocols' questions use a field only where the sample has it."""
    if config.score.prompts is None:
        return {category: [] for category in config.score.categories}
    return {category: sorted({match.group(1) for dimension in prompts.dimensions.values()
                              for name in template_names(dimension.user_prompt_template)
                              if (match := EXTRA_FIELD.fullmatch(name))})
            for category, prompts in config.score.prompts.items()}


def check_categories(config: RunConfig) -> None:
    known = judged_categories(config.score)
    for i, category in enumerate(config.dataset.categories or []):
        if category not in known:
            near = difflib.get_close_matches(category, known, n=1, cutoff=0.3)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(
                f"{where(config.source, f'dataset.categories[{i}]')}: unknown category '{category}'{hint} "
                f"(categories with prompts: {', '.join(known)})"
            )

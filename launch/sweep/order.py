"""The order of a sweep's checkpoints: the base model first, then by training step, else by name as a person reads it.

What counts as a step, so that a person can predict the order from the names alone:
- the number after a step word (`step`, `steps`, `global_step`, `checkpoint`, `ckpt`, `iter`, `iteration`), with
  or without a `-`, `_` or space between: `step-500`, `checkpoint_1000`, `global_step1500`, `iter 7`;
- else the last number in the name: `rl-500`, `lora_0003`;
- either with a `k` (thousand) or `m` (million) right after it that no letter follows: `ckpt-2k` is 2000,
  `step-1.5k` is not a step (a decimal point makes a number a version, `qwen2.5`, never a step).
When every checkpoint has a step they are ordered by it (`step-10` after `step-9`, `ckpt-2k` after `ckpt-500`,
whatever comes before the number), names with the same step by name; when one has none (`final`, `best`), all
are ordered by natural sort, which compares the digits in names as numbers (`a-9` before `a-10`). Standard library
only.
"""

from __future__ import annotations

import re

_NUMBER = r"(?<![0-9.])([0-9]+)(?![0-9]*\.[0-9])(?:([kKmM])(?![A-Za-z]))?"
_STEP_WORD = re.compile(r"(?:step|steps|checkpoint|ckpt|iter|iteration)[-_ ]?" + _NUMBER, re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_SCALE = {"": 1, "k": 1000, "m": 1_000_000}


def step_number(name: str) -> int | None:
    """The training step a checkpoint's name gives (see the module's rules), or None when it gives none."""
    found = _STEP_WORD.findall(name) or _ANY_NUMBER.findall(name)
    if not found:
        return None
    digits, scale = found[-1]
    return int(digits) * _SCALE[scale.lower()]


def natural_key(name: str) -> tuple:
    """A sort key that compares the runs of digits in names as numbers and the rest case-blind, the name itself
    last, so that no two names tie."""
    parts = re.split(r"([0-9]+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def checkpoint_order(names: list[str], base: str | None = None) -> tuple[list[str], str]:
    """`names` in sweep order, `base` (when given) first, and how the rest were ordered.

    Args:
        names: The checkpoints' names; `base` may be among them or not.
        base: The base model's name, or None when the sweep has no base model.

    Returns:
        (the names in order, "step" or "natural").

    Raises:
        ValueError: a name given twice.
    """
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"checkpoint names given more than once: {', '.join(twice)}")
    rest = [n for n in names if n != base]
    steps = {n: step_number(n) for n in rest}
    if all(step is not None for step in steps.values()):
        ordered, rule = sorted(rest, key=lambda n: (steps[n], natural_key(n))), "step"
    else:
        ordered, rule = sorted(rest, key=natural_key), "natural"
    return ([base] if base is not None else []) + ordered, rule

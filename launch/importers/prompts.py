"""A benchmark's own judge prompts, read from the files of the user's copy that ship them, and written beside the
imported dataset as `judge_prompts.json` (`shards.judge_prompts`), each source file's sha256 and its checkout's
git commit with them.

Python files are parsed with `ast` and only module-level string constants are taken: nothing in them is run.
A prompt file that is there but lacks a prompt (or holds it as something other than a string) is refused, naming
the file and every name looked for. Standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass

from launch.importers.common import BenchmarkError
from shards.files import atomic_write_json
from shards.judge_prompts import JUDGE_PROMPTS, JudgePrompts, PromptSource, prompts_digest, to_json


@dataclass(frozen=True)
class PromptFile:
    """Where a benchmark ships prompts: the file's places relative to the source (the first that exists), and the
    names to take from it."""

    places: tuple[str, ...]
    names: tuple[str, ...]


def find(source: str, spec: PromptFile) -> str | None:
    return next((os.path.join(source, p) for p in spec.places if os.path.isfile(os.path.join(source, p))), None)


def read_file(path: str, names: tuple[str, ...]) -> dict[str, str]:
    """The prompts `names` of one file: a JSON object's keys, or a Python file's module-level string constants.

    Raises:
        BenchmarkError: naming the file, the names missing and the names looked for.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = _json_strings(text) if path.endswith(".json") else _python_strings(text)
    except (OSError, UnicodeDecodeError, ValueError, SyntaxError, RecursionError) as e:
        raise BenchmarkError(f"{path}: cannot read the judge prompts: {e}") from None
    missing = [n for n in names if not isinstance(found.get(n), str)]
    if missing:
        raise BenchmarkError(f"{path}: the judge prompt(s) {', '.join(missing)} are not there as text (looked for "
                             f"{', '.join(names)})")
    return {n: found[n] for n in names}


def _json_strings(text: str) -> dict:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of prompts, got {type(data).__name__}")
    return data


def _python_strings(text: str) -> dict[str, str]:
    """NAME = "..." at the module's top level (implicitly joined literals included); nothing is executed."""
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and \
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found[node.targets[0].id] = node.value.value
    return found


def git_commit(folder: str) -> str | None:
    """The commit checked out in `folder`'s git work tree, or None when it is not one (or git is missing)."""
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_prompts(benchmark: str, source: str, specs: list[PromptFile]) -> JudgePrompts | None:
    """Every prompt of `specs` from `source`; None when none of their files is there (the open protocol needs
    none; the official one then refuses the dataset, naming this file).

    Raises:
        BenchmarkError: a prompt file found without all its prompts, or with only some of the files found.
    """
    paths = [find(source, spec) for spec in specs]
    if not any(paths):
        return None
    prompts, sources = {}, []
    for spec, path in zip(specs, paths):
        if path is None:
            raise BenchmarkError(f"{source}: no judge prompt file at {' or '.join(spec.places)} (looked for "
                                 f"{', '.join(spec.names)})")
        prompts.update(read_file(path, spec.names))
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        sources.append(PromptSource(path=os.path.relpath(path, source), sha256=digest, names=list(spec.names),
                                    commit=git_commit(os.path.dirname(path))))
    return JudgePrompts(benchmark=benchmark, prompts=prompts, sources=sources, sha256=prompts_digest(prompts))


def write_prompts(prompts: JudgePrompts, output: str) -> str:
    path = os.path.join(output, JUDGE_PROMPTS)
    atomic_write_json(path, to_json(prompts))
    return path

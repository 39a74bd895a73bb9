"""Shared fixtures: the demo config, configs written with changes, and the two stage interpreters.

The suite runs in the judge environment (`.envs/score`); anything that needs the edit environment runs in a
subprocess with that environment's interpreter, exactly as the launcher runs it.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, "configs", "demo.yaml")
DEMO_DATASET = os.path.join(REPO, "demo", "data", "benchmark.jsonl")


def absolute_demo_config() -> dict:
    """The demo config as data, every path made absolute so a copy can live in any folder."""
    from shards.config import load_config, to_dict

    data = to_dict(load_config(DEMO_CONFIG))
    data.pop("source")
    return data


def write_config(folder, changes: dict | None = None, drop: tuple[str, ...] = ()) -> str:
    """Write the demo config with dotted-key `changes` applied and `drop`ped keys into `folder`; returns its path."""
    data = copy.deepcopy(absolute_demo_config())
    for dotted, value in (changes or {}).items():
        parent, last = _parent(data, dotted)
        parent[last] = value
    for dotted in drop:
        parent, last = _parent(data, dotted)
        del parent[last]
    path = os.path.join(str(folder), "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, allow_unicode=True, sort_keys=False)
    return path


def _parent(data: dict, dotted: str) -> tuple[dict, str]:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    return data, last


@pytest.fixture(scope="session")
def pythons() -> dict[str, str]:
    """The demo's edit and judge interpreters (created by the launcher if they do not exist yet)."""
    from launch.cli import prepare_environments
    from shards.config import load_config

    return prepare_environments(load_config(DEMO_CONFIG))


def run_module(python: str, args: list[str], timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python args...` from the repository root with its output captured as text."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO, **(env or {})}
    return subprocess.run([python, *args], cwd=REPO, env=merged, capture_output=True, text=True, timeout=timeout)


def torchrun(python: str, module: str, nproc: int, args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """A real multi-rank job on CPU with gloo; `--standalone` picks a free port, so jobs never collide."""
    return run_module(python, ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                               "-m", module, *args], timeout=timeout)


def base_python() -> str:
    """The interpreter this suite's venv was made from: the launcher must run with no stage environment."""
    return getattr(sys, "_base_executable", sys.executable)

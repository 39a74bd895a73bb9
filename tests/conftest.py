"""Shared fixtures: the demo config, configs written with changes, and the two stage interpreters.

The suite runs in the judge environment with the test extra (`.envs/score+test`); anything that needs the edit
environment runs in a subprocess with that environment's interpreter, exactly as the launcher runs it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, "configs", "demo.yaml")
DEMO_DATASET = os.path.join(REPO, "demo", "data", "benchmark.jsonl")
FAULTS = os.path.join(REPO, "tests", "faults")


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


def write_lora_file(path) -> str:
    """A safetensors file shaped like a LoRA adapter (one `lora_A` tensor), for checks that read its header only;
    returns its path."""
    header = json.dumps({"transformer.x.lora_A.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode() + b"\0" * 4)
    return str(path)


def _parent(data: dict, dotted: str) -> tuple[dict, str]:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    return data, last


@pytest.fixture(scope="session")
def pythons() -> dict[str, str]:
    """The demo's edit and judge interpreters (created by the launcher if they do not exist yet)."""
    from launch.envs import prepare_environments
    from shards.config import load_config

    return prepare_environments(load_config(DEMO_CONFIG))


def run_module(python: str, args: list[str], timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python args...` from the repository root with its output captured as text."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO, **(env or {})}
    return subprocess.run([python, *args], cwd=REPO, env=merged, capture_output=True, text=True, timeout=timeout)


def torchrun(python: str, module: str, nproc: int, args: list[str], timeout: int = 900,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """A real multi-rank job on CPU with gloo; `--standalone` picks a free port, so jobs never collide."""
    return run_module(python, ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                               "-m", module, *args], timeout=timeout, env=env)


def fault(target: str, rank: int, action: str, **spec) -> dict:
    """Environment that makes tests/faults/sitecustomize.py inject `action` into `target` on `rank`."""
    return {"EDIT_BENCH_FAULT": json.dumps({"target": target, "rank": rank, "action": action, **spec}),
            "PYTHONPATH": os.pathsep.join([FAULTS, REPO])}


def copy_run(source: str, target: str, scores: bool = True) -> str:
    """A copy of a run's output folder, with or without the score stage's outputs (journals, report)."""
    skip = () if scores else ("report.*", "results.csv", "thumbnails.json", "score*")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("logs", *skip))
    return target


@pytest.fixture(scope="session")
def demo_launch(pythons, tmp_path_factory) -> tuple[str, str, subprocess.CompletedProcess]:
    """(config, output folder, the launcher's exit and output) of the demo as shipped, run once by the launcher as
    the README runs it: 10 samples, 2 ranks in each stage. Tests that write into it work on a `copy_run` of it."""
    out = str(tmp_path_factory.mktemp("demo-run") / "run")
    done = run_module(base_python(), ["-m", "launch", "--config", DEMO_CONFIG, "--output-dir", out], timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return DEMO_CONFIG, out, done


@pytest.fixture(scope="session")
def demo_run(demo_launch) -> tuple[str, str]:
    """(config, output folder) of one complete, uninterrupted demo run: 10 samples, 2 ranks in each stage."""
    config, out, _ = demo_launch
    return config, out


def cuda_usable() -> bool:
    """Whether this environment's torch can use a CUDA GPU, asked as the stages ask (shards.runtime.device)."""
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, never faked on the CPU, where no CUDA GPU is usable."""
    needing = [item for item in items if item.get_closest_marker("gpu")]
    if needing and not cuda_usable():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; this environment's torch cannot use one")
        for item in needing:
            item.add_marker(skip)


PACKAGES = ("launch", "edit_stage", "score_stage", "shards")


def project_sources() -> list[tuple[str, str]]:
    """(path relative to the repository, text) of every Python file of the four packages, sub-packages included."""
    found = []
    for package in PACKAGES:
        for folder, subfolders, names in os.walk(os.path.join(REPO, package)):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    found.append((os.path.relpath(path, REPO), f.read()))
    return found


def base_python() -> str:
    """The interpreter this suite's venv was made from: the launcher must run with no stage environment."""
    return getattr(sys, "_base_executable", sys.executable)


CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (apt-get install chromium); CI installs it and never skips this")


def chromium(page: str, out_dir, *flags: str) -> tuple[str, str]:
    """Run headless Chromium on a file URL, as the CI machine's probe does; returns (stdout, stderr)."""
    assert CHROMIUM, "chromium is required in CI"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={out_dir}/chromium-profile", "--enable-logging=stderr", "--v=0", *flags,
         f"file://{page}"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def console_messages(stderr: str) -> list[str]:
    """Every message the page wrote to the console: errors, uncaught exceptions, refused loads."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]

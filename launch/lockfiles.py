"""Locks of the stage environments: every package pinned, transitive ones included, so that an environment built
next month is the one the numbers came from.

    python3 -m launch lock --config configs/demo.yaml --config configs/qwen-image-edit-2511.yaml

writes one lock per venv the configs describe, `configs/locks/<extras>[@<torch index>].txt` (e.g. `edit.txt`,
`score+test.txt`, `edit@cu126.txt`), from pip's own resolution of this project's pinned requirements
(`pip install --dry-run --report`), for this interpreter's Python version and platform. The launcher installs a
venv from its lock with `--no-deps`, and refuses a lock that is missing, made for another Python or platform, or
older than the requirements in pyproject.toml, saying which command makes a new one. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib

from shards.config import REPO_ROOT, environment_name

LOCKS_DIR = os.path.join(REPO_ROOT, "configs", "locks")
PROJECT = "qwen-edit-bench"


class LockError(RuntimeError):
    """A lock that is missing, stale, or made for another interpreter; the message says how to make it."""


def lock_path(extras: list[str], torch_index: str | None) -> str:
    return os.path.join(LOCKS_DIR, f"{environment_name(extras, torch_index)}.txt")


def requirements_digest(requirements: list[str], torch_index: str | None) -> str:
    """What a lock was resolved from: the sorted requirements and the PyTorch index."""
    return hashlib.sha256(json.dumps([sorted(requirements), torch_index]).encode()).hexdigest()


def interpreter_tag() -> str:
    """The Python minor version and platform a lock is resolved for (its wheels are specific to both)."""
    return f"python {'.'.join(platform.python_version_tuple()[:2])} {sys.platform} {platform.machine()}"


def lock_lines(report: dict, requirements: list[str], torch_index: str | None) -> list[str]:
    """A lock file's lines from pip's installation report: a header saying what it was made from, then
    `name==version` for every package pip would install, this project left out (it is installed editable)."""
    pins = sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in report["install"]
                  if item["metadata"]["name"].lower() != PROJECT)
    return ["# made by: python3 -m launch lock (pip's resolution of pyproject.toml's pins)",
            f"# for: {interpreter_tag()}",
            f"# requirements sha256: {requirements_digest(requirements, torch_index)}",
            *(["# torch index: " + torch_index] if torch_index else []), *pins]


def read_lock(extras: list[str], requirements: list[str], torch_index: str | None) -> str:
    """The lock of these extras, checked to be current and for this interpreter; returns its path.

    Raises:
        LockError: naming the lock and the command that makes it.
    """
    path, remedy = lock_path(extras, torch_index), "make it with: python3 -m launch lock --config <your config>"
    try:
        with open(path, encoding="utf-8") as f:
            header = [line for line in f.read().splitlines() if line.startswith("# ")]
    except FileNotFoundError:
        raise LockError(f"no lock for extras {sorted(extras)} at {path}; {remedy}") from None
    if f"# for: {interpreter_tag()}" not in header:
        made = next((line[len("# for: "):] for line in header if line.startswith("# for: ")), "unknown")
        raise LockError(f"{path} was made for {made}, not {interpreter_tag()}; {remedy}")
    if f"# requirements sha256: {requirements_digest(requirements, torch_index)}" not in header:
        raise LockError(f"{path} is older than the requirements in pyproject.toml; {remedy}")
    return path


def without_dependencies() -> list[str]:
    """The packages pyproject.toml says to install without their own dependency pins (normalised names)."""
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f).get("tool", {}).get(PROJECT, {})
    return [normalised(name) for name in tool.get("install-without-dependencies", [])]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return normalised(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def make_lock(extras: list[str], requirements: list[str], torch_index: str | None) -> str:
    """Resolve the project's requirements with pip (nothing is installed) and write the lock; returns its path.

    A package installed without its own dependencies (`without_dependencies`) is left out of the resolution and
    added to the lock as pinned; its extra lists what it needs.
    """
    alone = [r for r in requirements if _requirement_name(r) in without_dependencies()]
    if any("==" not in r for r in alone):
        raise LockError(f"{alone}: a package installed without its dependencies must be pinned with ==")
    spec = f"{REPO_ROOT}[{','.join(extras)}]" if extras else REPO_ROOT
    index = ["--extra-index-url", torch_index] if torch_index else []
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "report.json")
        if alone:
            listed = os.path.join(tmp, "requirements.txt")
            with open(listed, "w", encoding="utf-8") as f:
                f.write("\n".join(r for r in requirements if r not in alone) + "\n")
            target = ["-r", listed]
        else:
            target = ["-e", spec]
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                               "--quiet", "--disable-pip-version-check", "--report", report_path, *index, *target],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise LockError(f"pip could not resolve {spec}:\n{done.stdout[-4000:]}")
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    for requirement in alone:
        name, version = (part.strip() for part in requirement.split("=="))
        report["install"].append({"metadata": {"name": name, "version": version}})
    path = lock_path(extras, torch_index)
    os.makedirs(LOCKS_DIR, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lock_lines(report, requirements, torch_index)) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Lock every venv the given configs describe; returns the exit status."""
    from shards.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python3 -m launch lock", description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="a run config (repeatable)")
    args = parser.parse_args(argv)
    wanted = {}
    try:
        for path in args.config:
            config = load_config(path)
            server = config.score.server
            served = [server.start.env] if server is not None and server.start is not None else []
            for env in (config.edit.env, config.score.env, *served):
                if env.venv:
                    wanted[lock_path(env.extras, env.torch_index)] = (env.extras, env.torch_index)
        for extras, torch_index in wanted.values():
            requirements = requirements_stamp(extras)["requirements"]
            print(f"[lock] resolving {sorted(extras)}{' from ' + torch_index if torch_index else ''} ...", flush=True)
            print(f"[lock] wrote {make_lock(extras, requirements, torch_index)}", flush=True)
    except (ConfigError, LockError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def requirements_stamp(extras: list[str], torch_index: str | None = None) -> dict:
    """What a venv is built from: the project's pinned requirements for `extras`, and the PyTorch index.

    Raises:
        LockError: for an extra that pyproject.toml does not define.
    """
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise LockError(f"unknown extras {unknown} (pyproject.toml defines {sorted(optional)})")
    requirements = sorted(project.get("dependencies", []) + [r for e in extras for r in optional[e]])
    return {"extras": sorted(extras), "requirements": requirements, "torch_index": torch_index}

"""Finding each stage's Python interpreter: an existing path, a conda environment, or a venv the launcher builds
(`launch/venvs.py`); every setting is checked before any venv is built.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess

from launch.lockfiles import LockError, requirements_stamp
from launch.venvs import EnvError, ensure_venv
from shards.config import Environment
from shards.events import STAGES


def existing_interpreter(env: Environment, stage: str) -> str | None:
    """The interpreter of a `python` or `conda` environment, checked to exist; None for a venv the launcher makes.

    Raises:
        EnvError: naming the setting (`<stage>.env.python` / `.conda`) that does not give a usable interpreter.
    """
    if env.python:
        python = shutil.which(env.python) or env.python
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise EnvError(f"{env_key(stage)}.python: no executable interpreter at {env.python}")
        return python
    if env.conda:
        return _conda_interpreter(env.conda, stage)
    return None


def _conda_interpreter(name: str, stage: str) -> str:
    # Ask conda once for the interpreter and run it directly: `conda run` buffers the child's output,
    # which is how the old system's scores appeared only at the end.
    conda = os.environ.get("CONDA_EXE") or shutil.which("conda")
    if not conda:
        raise EnvError(f"{env_key(stage)}.conda: conda is not on PATH (or set {env_key(stage)}.python instead)")
    done = subprocess.run([conda, "run", "-n", name, "python", "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvError(f"{env_key(stage)}.conda: conda environment '{name}' is not usable: "
                       f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1]


def env_key(name: str) -> str:
    """Where an environment is set in the config: `edit.env`, `score.env`, or the judge server's."""
    return "score.server.start.env" if name == "serve" else f"{name}.env"


def environments(config, stages: tuple[str, ...] = STAGES) -> dict[str, Environment]:
    """The environments a run needs, by name: each stage's, and a judge server's when the launcher starts one."""
    envs = {stage: getattr(config, stage).env for stage in stages}
    server = config.score.server
    if "score" in stages and server is not None and server.start is not None:
        envs["serve"] = server.start.env
    return envs


def prepare_environments(config, stages: tuple[str, ...] = STAGES) -> dict[str, str]:
    """The interpreters of the environments the run needs (`environments`: both stages' by default, and a judge
    server's). Every setting is checked first (an interpreter path, a conda name, a venv's extras), so that a
    mistake in one stops the launch before any environment is built or rebuilt; then missing venvs are built
    side by side (pip mostly waits on disk)."""
    envs = environments(config, stages)
    stages = tuple(envs)
    pythons = {stage: existing_interpreter(env, stage) for stage, env in envs.items()}
    for stage, env in envs.items():
        try:
            if pythons[stage] is None:
                requirements_stamp(env.extras, env.torch_index)
        except LockError as e:
            raise EnvError(f"{env_key(stage)}.extras: {e}") from None
    to_build = [stage for stage in stages if pythons[stage] is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(stages)) as pool:
        futures = {stage: pool.submit(ensure_venv, envs[stage].venv, envs[stage].extras, stage,
                                      envs[stage].torch_index) for stage in to_build}
        pythons.update({stage: future.result() for stage, future in futures.items()})
    return pythons


def describe_env(python: str) -> str:
    """The versions that matter, read from the environment's package metadata (no heavy imports)."""
    code = ("import importlib.metadata as m\n"
            "for n in ('torch', 'transformers', 'diffusers'):\n"
            "    try: print(f'{n} {m.version(n)}')\n"
            "    except m.PackageNotFoundError: pass")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return ", ".join(done.stdout.split("\n")).strip(", ") if done.returncode == 0 else done.stderr.strip()

"""Finding or creating each stage's Python interpreter: an existing path, a conda environment, or a venv.

A venv is created with `venv` + pip on first use, installing this project with the stage's extras (their pinned
requirements are in pyproject.toml), and reused afterwards; a stamp of those requirements decides when it must be
recreated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

from shards.config import REPO_ROOT, Environment

STAMP_NAME = ".launch-requirements.json"


class EnvError(RuntimeError):
    """A stage environment that cannot be found or created."""


def interpreter(env: Environment, stage: str) -> str:
    """The interpreter of a stage's environment, creating the venv if needed."""
    if env.python:
        python = shutil.which(env.python) or env.python
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise EnvError(f"{stage}.env.python: no executable interpreter at {env.python}")
        return python
    if env.conda:
        return _conda_interpreter(env.conda, stage)
    return ensure_venv(env.venv, env.extras, stage)


def _conda_interpreter(name: str, stage: str) -> str:
    # Ask conda once for the interpreter and run it directly: `conda run` buffers the child's output,
    # which is how the old system's scores appeared only at the end.
    conda = os.environ.get("CONDA_EXE") or shutil.which("conda")
    if not conda:
        raise EnvError(f"{stage}.env.conda: conda is not on PATH (or set {stage}.env.python instead)")
    done = subprocess.run([conda, "run", "-n", name, "python", "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvError(f"{stage}.env.conda: conda environment '{name}' is not usable: "
                                f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1]


def requirements_stamp(extras: list[str]) -> dict:
    """What a venv was built from: the interpreter version and the project's pinned requirements for `extras`."""
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise EnvError(f"unknown extras {unknown} (pyproject.toml defines {sorted(optional)})")
    requirements = sorted(project.get("dependencies", []) + [r for e in extras for r in optional[e]])
    return {"python": sys.version.split()[0], "extras": sorted(extras), "requirements": requirements}


def ensure_venv(folder: str, extras: list[str], stage: str) -> str:
    """The venv's interpreter, (re)creating the venv when it is missing or its requirements changed."""
    python = os.path.join(folder, "bin", "python")
    stamp = requirements_stamp(extras)
    stamp_path = os.path.join(folder, STAMP_NAME)
    if os.path.isfile(python) and os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f) == stamp:
                return python
        print(f"[launch] {stage}: requirements changed since {folder} was built; recreating it", flush=True)
    _create_venv(folder, extras, stage)
    # The stamp is written last: an interrupted install leaves no stamp and is redone next time.
    with open(stamp_path, "w", encoding="utf-8") as f:
        json.dump(stamp, f, indent=2)
    return python


def _create_venv(folder: str, extras: list[str], stage: str) -> None:
    start = time.monotonic()
    spec = f"{REPO_ROOT}[{','.join(extras)}]" if extras else REPO_ROOT
    print(f"[launch] {stage}: creating environment {folder} (pip install -e {spec}); first use takes minutes",
          flush=True)
    steps = [[sys.executable, "-m", "venv", "--clear", folder],
             [os.path.join(folder, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-e", spec]]
    for command in steps:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise EnvError(f"{stage}: creating {folder} failed at `{' '.join(command)}`:\n"
                                    f"{done.stdout[-4000:]}")
    print(f"[launch] {stage}: environment ready in {time.monotonic() - start:.0f}s", flush=True)

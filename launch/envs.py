"""Finding or creating each stage's Python interpreter: an existing path, a conda environment, or a venv.

A venv is created with `venv` + pip on first use from the lock of the stage's extras (`configs/locks/`, made by
`python3 -m launch lock` from the pins in pyproject.toml: every package, transitive ones included), then this
project is installed into it, editable; it is reused afterwards. Its stamp records what it was built from and what it
is: the requirements, and the version of its own interpreter (not the launcher's, which may be another patch
release). When the requirements change, a replacement is built beside it and swapped in only once complete, so a
failed rebuild (an unreachable package index, say) leaves the working environment as it was.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

from launch.lockfiles import LockError, read_lock, requirements_stamp
from shards.config import REPO_ROOT, Environment
from shards.events import STAGES
from shards.files import sha256_file

STAMP_NAME = ".launch-requirements.json"
BUILDING, REPLACED = ".building", ".replaced"     # suffixes of a replacement being built, and of the one it replaces
BUILD_MUTEX = ".build-mutex"          # held while a venv is checked or built, so nodes sharing it build it once


class EnvError(RuntimeError):
    """A stage environment that cannot be found or created."""


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


def python_version(python: str) -> str | None:
    """The version of the interpreter at `python`, asked of it; None if it does not run (its base is gone)."""
    try:
        done = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _minor(version: str | None) -> str | None:
    return ".".join(version.split(".")[:2]) if version else None


def ensure_venv(folder: str, extras: list[str], stage: str, torch_index: str | None = None) -> str:
    """The venv's interpreter, building a replacement from its lock when it is missing, broken or its lock
    changed.

    Raises:
        EnvError: if there is no current lock, or the build fails; an environment that was there is left in
            place, working as before.
    """
    try:
        wanted = requirements_stamp(extras, torch_index)
        lockfile = read_lock(extras, wanted["requirements"], torch_index)
    except LockError as e:
        raise EnvError(f"{stage}: {e}") from None
    wanted["lock_sha256"] = sha256_file(lockfile)
    # Nodes of one run sharing the repository's folder build an environment once: the first builds, the others
    # wait on this mutex and then find it ready.
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    with open(folder + BUILD_MUTEX, "a") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        return _ensure_built(folder, extras, stage, wanted, lockfile)


def _ensure_built(folder: str, extras: list[str], stage: str, wanted: dict, lockfile: str) -> str:
    python = os.path.join(folder, "bin", "python")
    _finish_interrupted_swap(folder)
    stamp = _read_stamp(folder)
    if stamp is not None:
        # Another patch release of the same Python runs the same packages: only a changed minor version, or an
        # interpreter that no longer runs, needs a rebuild.
        same_python = _minor(python_version(python)) == _minor(stamp.get("python"))
        if same_python and all(stamp.get(k) == v for k, v in wanted.items()):
            return python
        why = "requirements or lock changed" if same_python else "its interpreter no longer runs as it was built"
        print(f"[launch] {stage}: {why} since {folder} was built; building a replacement beside it", flush=True)
    _build_beside(folder, extras, stage, wanted, lockfile)
    return python


def _read_stamp(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, STAMP_NAME), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _build_beside(folder: str, extras: list[str], stage: str, wanted: dict, lock: str) -> None:
    """Build the venv at `<folder>.building` from `lock`, point its scripts at `folder`, then swap it in."""
    start, staging = time.monotonic(), folder + BUILDING
    spec = f"{REPO_ROOT}[{','.join(extras)}]" if extras else REPO_ROOT
    print(f"[launch] {stage}: creating environment {folder} from {os.path.relpath(lock, REPO_ROOT)} "
          f"(pip install -e {spec}); first use takes minutes", flush=True)
    shutil.rmtree(staging, ignore_errors=True)                  # what an interrupted build left
    try:
        _run([sys.executable, "-m", "venv", staging], stage, folder)
        _install(os.path.join(staging, "bin", "python"), spec, stage, folder, wanted["torch_index"], lock)
        _retarget(staging, folder)
        stamp = {**wanted, "python": python_version(os.path.join(staging, "bin", "python"))}
        # The stamp is written last: a replacement without one is unfinished and is never swapped in.
        with open(os.path.join(staging, STAMP_NAME), "w", encoding="utf-8") as f:
            json.dump(stamp, f, indent=2)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(staging, folder)
    print(f"[launch] {stage}: environment ready in {time.monotonic() - start:.0f}s", flush=True)


def _install(python: str, spec: str, stage: str, folder: str, torch_index: str | None, lock: str) -> None:
    """pip-install every package of `lock` as pinned, then this project (editable), both without resolving
    anything anew; torch from `torch_index` when given (the lock pins its build, e.g. `2.14.1+cu126`)."""
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    index = ["--extra-index-url", torch_index] if torch_index else []
    _run([*pip, *index, "-r", lock], stage, folder)
    _run([*pip, "-e", spec], stage, folder)


def _run(command: list[str], stage: str, folder: str) -> None:
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        kept = " (the environment in use is left as it was)" if os.path.isdir(folder) else ""
        raise EnvError(f"{stage}: building {folder} failed{kept} at `{' '.join(command)}`:\n{done.stdout[-4000:]}")


def _retarget(staging: str, folder: str) -> None:
    """Point what the venv wrote with its own path (script shebangs, activate scripts, pyvenv.cfg) at `folder`,
    where it will live; the interpreter itself finds its prefix from where it is run."""
    old, new = staging.encode(), folder.encode()
    bin_dir = os.path.join(staging, "bin")
    paths = [os.path.join(bin_dir, n) for n in os.listdir(bin_dir)] + [os.path.join(staging, "pyvenv.cfg")]
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if old in data:
            with open(path, "wb") as f:
                f.write(data.replace(old, new))


def _swap(staging: str, folder: str) -> None:
    """Put the finished replacement in place of `folder`; `_finish_interrupted_swap` completes it after a crash."""
    if os.path.exists(folder):
        shutil.rmtree(folder + REPLACED, ignore_errors=True)
        os.rename(folder, folder + REPLACED)
    os.rename(staging, folder)
    shutil.rmtree(folder + REPLACED, ignore_errors=True)


def _finish_interrupted_swap(folder: str) -> None:
    """A launcher killed mid-swap leaves the finished replacement (it has its stamp) beside a missing folder."""
    staging = folder + BUILDING
    if not os.path.exists(folder) and _read_stamp(staging) is not None:
        os.rename(staging, folder)
    elif not os.path.exists(folder) and os.path.isdir(folder + REPLACED):
        os.rename(folder + REPLACED, folder)
    if os.path.exists(folder):
        shutil.rmtree(folder + REPLACED, ignore_errors=True)


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

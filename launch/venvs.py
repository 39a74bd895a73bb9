"""Building a stage's venv from its lock, and the PyTorch layer the venvs share.

A venv is created with `venv` + pip on first use from the lock of the stage's extras (`configs/locks/`, made by
`python3 -m launch lock` from the pins in pyproject.toml: every package, transitive ones included), then this
project is installed into it, editable; it is reused afterwards. Its stamp records what it was built from and what it
is: the requirements, and the version of its own interpreter (not the launcher's, which may be another patch
release). When the requirements change, a replacement is built beside it and swapped in only once complete, so a
failed rebuild (an unreachable package index, say) leaves the working environment as it was.

PyTorch and what comes with it (torch, torchvision, triton, the nvidia-* CUDA libraries: about 5.3 GB of the 5.8 GB
of a stage's venv) is installed once, into a PyTorch layer beside the venvs (`launch/pytorch_layer.py`), built here
the way a venv is.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

from launch import pytorch_layer
from launch.lockfiles import LockError, read_lock, requirements_stamp
from shards.config import REPO_ROOT
from shards.files import sha256_file


class EnvError(RuntimeError):
    """A stage environment that cannot be found or created."""


STAMP_NAME = ".launch-requirements.json"
BUILDING = ".building"                # suffix of a replacement being built
REPLACED = ".replaced"                # and of the one it replaces, until it is removed
BUILD_MUTEX = ".build-mutex"          # held while a venv is checked or built, so nodes sharing it build it once


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
    # Where it really is: a venv reached through a link (a worktree's `.envs/edit`) or a relative path is one venv,
    # on the layer beside it, rebuilt in place; its scripts name its interpreter by an absolute path.
    folder = os.path.realpath(folder)
    try:
        wanted = requirements_stamp(extras, torch_index)
        lockfile = read_lock(extras, wanted["requirements"], torch_index)
    except LockError as e:
        raise EnvError(f"{stage}: {e}") from None
    wanted["lock_sha256"] = sha256_file(lockfile)
    layered = pytorch_layer.layer_pins(lockfile)
    wanted["pytorch_layer"] = pytorch_layer.layer_folder(folder, layered, torch_index) if layered else None
    # Nodes of one run sharing the repository's folder build an environment once: the first builds, the others
    # wait on this mutex and then find it ready.
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(folder + BUILD_MUTEX, "a") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        return _ensure_built(folder, extras, stage, wanted, lockfile, layered)


def _ensure_built(folder: str, extras: list[str], stage: str, wanted: dict, lockfile: str,
                  layered: list[str]) -> str:
    python = os.path.join(folder, "bin", "python")
    _finish_interrupted_swap(folder)
    stamp = _read_stamp(folder)
    if stamp is not None:
        # Another patch release of the same Python runs the same packages: only a changed minor version, or an
        # interpreter that no longer runs, needs a rebuild.
        same_python = _minor(python_version(python)) == _minor(stamp.get("python"))
        if same_python and all(stamp.get(k) == v for k, v in wanted.items()):
            if layered:               # repaired when it was deleted to free the disk, say
                ensure_layer(wanted["pytorch_layer"], layered, stage, wanted["torch_index"])
            return python
        changed = {k for k, v in wanted.items() if stamp.get(k) != v}
        why = ("its interpreter no longer runs as it was built" if not same_python else
               f"it does not read the PyTorch layer {wanted['pytorch_layer']}" if changed == {"pytorch_layer"} else
               "requirements or lock changed")
        print(f"[launch] {stage}: {why} since {folder} was built; building a replacement beside it", flush=True)
    _build_beside(folder, extras, stage, wanted, lockfile, layered)
    return python


def _read_stamp(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, STAMP_NAME), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _build_beside(folder: str, extras: list[str], stage: str, wanted: dict, lock: str, layered: list[str]) -> None:
    """Build the venv from `lock` beside `folder`, on its PyTorch layer, then swap it in. The layer is waited
    for (or built) only once the venv's own packages are in: venvs built side by side install theirs meanwhile."""
    start = time.monotonic()
    spec = f"{REPO_ROOT}[{','.join(extras)}]" if extras else REPO_ROOT
    print(f"[launch] {stage}: creating environment {folder} from {os.path.relpath(lock, REPO_ROOT)} "
          f"(pip install -e {spec}); first use takes minutes", flush=True)

    def install(python: str) -> None:
        _install(python, spec, stage, folder, wanted["torch_index"], lock)
        if layered:
            ensure_layer(wanted["pytorch_layer"], layered, stage, wanted["torch_index"])
            _link(python, wanted["pytorch_layer"], stage, folder)

    _build_at(folder, stage, install, wanted)
    print(f"[launch] {stage}: environment ready in {time.monotonic() - start:.0f}s", flush=True)


def _build_at(folder: str, stage: str, install, wanted: dict) -> None:
    """Create a venv at `<folder>.building`, `install` into it (given its interpreter), point what it wrote with
    its own path at `folder`, write its stamp (`wanted` and its Python version) last, then swap it in."""
    staging = folder + BUILDING
    shutil.rmtree(staging, ignore_errors=True)                  # what an interrupted build left
    try:
        _run([sys.executable, "-m", "venv", staging], stage, folder)
        python = os.path.join(staging, "bin", "python")
        install(python)
        _retarget(staging, folder)
        # The stamp is written last: a replacement without one is unfinished and is never swapped in.
        with open(os.path.join(staging, STAMP_NAME), "w", encoding="utf-8") as f:
            json.dump({**wanted, "python": python_version(python)}, f, indent=2)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):  # a full disk, say: the error of a file's close names neither it nor the venv
            raise EnvError(f"{_failed(stage, folder)}: {e}") from None
        raise
    _swap(staging, folder)


def _install(python: str, spec: str, stage: str, folder: str, torch_index: str | None, lock: str) -> None:
    """pip-install every package of `lock` as pinned but those of the PyTorch layer, then this project
    (editable), both without resolving anything anew; torch from `torch_index` when given (the lock pins its
    build, e.g. `2.14.1+cu126`)."""
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    index = ["--extra-index-url", torch_index] if torch_index else []
    with open(lock, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rest = [line for line in lines if not pytorch_layer.LAYERED.match(line)]
    requirements = lock
    if rest != lines:
        requirements = os.path.join(os.path.dirname(os.path.dirname(python)), "lock-without-pytorch-layer.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write("\n".join(rest) + "\n")
    _run([*pip, *index, "-r", requirements], stage, folder)
    if requirements != lock:
        os.remove(requirements)
    _run([*pip, "-e", spec], stage, folder)


def ensure_layer(layer: str, pins: list[str], stage: str, torch_index: str | None) -> None:
    """Build the PyTorch layer at `layer` unless it is there and complete: a venv of its own, from these pins,
    built at `<layer>.building` and renamed into place when done (its stamp written last)."""
    os.makedirs(os.path.dirname(layer), exist_ok=True)
    wanted = {"pins": pins, "torch_index": torch_index}
    with open(layer + BUILD_MUTEX, "a") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        _finish_interrupted_swap(layer)
        if all((_read_stamp(layer) or {}).get(k) == v for k, v in wanted.items()):
            gone = pytorch_layer.missing(layer, pins)
            if gone is None:
                return
            print(f"[launch] {stage}: the PyTorch layer {layer} is incomplete: {gone}; building it again", flush=True)
        start = time.monotonic()
        print(f"[launch] {stage}: installing PyTorch ({len(pins)} packages: torch, torchvision, triton, nvidia-*) "
              f"into {layer}, shared by every environment of these pins; first use takes minutes", flush=True)

        def install(python: str) -> None:
            with open(os.path.join(os.path.dirname(os.path.dirname(python)), "pins.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(pins) + "\n")
            index = ["--extra-index-url", torch_index] if torch_index else []
            _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", *index,
                  "-r", f.name], stage, layer)

        _build_at(layer, stage, install, wanted)
        print(f"[launch] {stage}: PyTorch layer ready in {time.monotonic() - start:.0f}s", flush=True)


def _link(python: str, layer: str, stage: str, folder: str) -> None:
    """Link the new venv whose interpreter is `python` to its PyTorch layer."""
    for kept, package in pytorch_layer.link(python, layer):
        print(f"[launch] {stage}: {folder} keeps its own {kept}, not the PyTorch layer's ({package}'s command)",
              flush=True)


def _run(command: list[str], stage: str, folder: str) -> None:
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise EnvError(f"{_failed(stage, folder)} at `{' '.join(command)}`:\n{done.stdout[-4000:]}")


def _failed(stage: str, folder: str) -> str:
    kept = " (the environment in use is left as it was)" if os.path.isdir(folder) else ""
    return f"{stage}: building {folder} failed{kept}"


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

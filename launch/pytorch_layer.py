"""The PyTorch layer that stage venvs share: torch, torchvision, triton and the nvidia-* libraries (5.3 GB of a
stage venv's 5.8 GB), installed once beside the venvs (`torch-<version>-<key>`, keyed by those pins) by
`launch.venvs`, and read by every venv whose lock pins the same ones through a `.pth` line in its site-packages,
after its own packages. What belongs in it, where it lives, whether it is whole, and linking a venv to it.
Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import sysconfig

from launch.lockfiles import interpreter_tag, normalised

LAYER_PTH = "pytorch-layer.pth"       # the line in a venv's site-packages that puts its PyTorch layer on sys.path
LAYERED = re.compile(r"^(torch|torchvision|triton|nvidia-[a-z0-9-]+)==", re.IGNORECASE)


def layer_pins(lock: str) -> list[str]:
    """The lines of `lock` that go into a PyTorch layer: torch, torchvision, triton and the nvidia-* libraries."""
    with open(lock, encoding="utf-8") as f:
        return sorted(line.strip() for line in f if LAYERED.match(line.strip()))


def layer_folder(folder: str, pins: list[str], torch_index: str | None) -> str:
    """Where the layer of these pins lives: beside the venv `folder`, named by its torch version and a key of
    the pins, the PyTorch index and the interpreter (venvs in one folder whose locks agree share it)."""
    key = hashlib.sha256(json.dumps([pins, torch_index, interpreter_tag()]).encode()).hexdigest()[:12]
    torch = next((pin.split("==")[1] for pin in pins if pin.lower().startswith("torch==")), "none")
    return os.path.join(os.path.dirname(os.path.abspath(folder)), f"torch-{torch}-{key}")


def site_packages(prefix: str) -> str:
    """The site-packages of the venv at `prefix` (the layer, or a stage's venv), made by this Python's `venv`."""
    return sysconfig.get_path("purelib", "venv", {"base": prefix, "platbase": prefix})


def missing(layer: str, pins: list[str]) -> str | None:
    """What of the pinned packages the layer no longer has (a deletion to free the disk that stopped part-way may
    have left its stamp), or None when it has every file pip installed of them."""
    site = site_packages(layer)
    found = {normalised(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[site])}
    return next((gone for gone in (_gone(site, found, pin) for pin in pins) if gone), None)


def _gone(site: str, found: dict, pin: str) -> str | None:
    """What of the pinned package is missing from `site` (`found`: its distributions by name), or None. Compiled
    .pyc files are not counted (a cleanup may remove them; Python writes them again)."""
    name, version = pin.split("==")
    dist = found.get(normalised(name))
    if dist is None or dist.version != version:
        return f"{pin} is not installed"
    gone = [str(f) for f in dist.files or [] if f.parts[0] != ".." and f.suffix != ".pyc"
            and not os.path.exists(os.path.join(site, f))]
    return f"{len(gone)} file(s) of {pin} are gone ({gone[0]}, ...)" if gone else None


def link(python: str, layer: str) -> list[tuple[str, str]]:
    """Put the layer's site-packages on the path of the venv whose interpreter is `python`, after its own, and the
    layer's commands (torchrun, ...) in its bin, run by its interpreter as pip writes them. Returns (file, package)
    of the commands the venv keeps its own file of."""
    layer_site = site_packages(layer)
    with open(os.path.join(site_packages(os.path.dirname(os.path.dirname(python))), LAYER_PTH), "w",
              encoding="utf-8") as f:
        f.write(layer_site + "\n")
    kept = []
    for dist in importlib.metadata.distributions(path=[layer_site]):
        if not LAYERED.match(f"{dist.metadata['Name']}=="):     # the layer venv's own pip, say
            continue
        for entry in dist.entry_points.select(group="console_scripts"):
            script = os.path.join(os.path.dirname(python), entry.name)
            if os.path.lexists(script):     # the venv's own comes first, as on its path; `python` is a link
                kept.append((f"bin/{entry.name}", dist.metadata["Name"]))
                continue
            with open(script, "w", encoding="utf-8") as f:
                f.write(f"{_shebang(python)}import sys\nfrom {entry.module} import {entry.attr.split('.')[0]}\n"
                        f"if __name__ == '__main__':\n    sys.exit({entry.attr}())\n")
            os.chmod(script, 0o755)
    return kept


def _shebang(python: str) -> str:
    """The first line(s) of a script run by `python`, as pip writes them: Linux reads a `#!` line up to its first
    space and no further than 127 bytes, so a longer path or one with a space is run through /bin/sh."""
    if " " not in python and len(f"#!{python}\n") <= 127:
        return f"#!{python}\n"
    return f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n"

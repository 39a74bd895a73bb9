"""What makes a score reproducible: which tool, which packages, which model revision, which prompts.

Both stages record these beside their outputs (the manifest, the report), so that a figure can be traced to
the exact code, weights, prompts and environment that produced it. Standard library only; the hub revision asks
huggingface_hub (present in both stage environments) for the snapshot it loaded from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from typing import Any

from shards.config import REPO_ROOT, ScoreConfig
from shards.judge_prompts import JudgePrompts


def tool_version() -> dict[str, Any]:
    """This tool's package version and, in a git checkout, its commit and whether files differ from it."""
    try:
        version = importlib.metadata.version("qwen-edit-bench")
    except importlib.metadata.PackageNotFoundError:
        version = None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, timeout=30)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": version, "git_commit": commit, "git_dirty": None if status is None else bool(status)}


def source_digest(packages: tuple[str, ...] = ("launch", "edit_stage", "shards", "score_stage")) -> str:
    """A sha256 over the tool's Python sources (each file's path and content): unlike the git commit, it shows an
    uncommitted edit, and it exists in a copy of the code without git."""
    digest = hashlib.sha256()
    for package in packages:
        for folder, subfolders, names in os.walk(os.path.join(REPO_ROOT, package)):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    digest.update(f"{os.path.relpath(path, REPO_ROOT)}\0".encode() + f.read() + b"\0")
    return digest.hexdigest()


def installed_packages() -> dict[str, str]:
    """Every distribution installed in this environment, by name (the transitive ones too)."""
    return dict(sorted((d.metadata["Name"].lower(), d.version) for d in importlib.metadata.distributions()
                       if d.metadata["Name"]))


def hub_revision(model: str) -> str | None:
    """The commit of the hub snapshot a hub id resolves to in the local cache (after loading); None for a local
    folder, or when it is not cached."""
    if os.path.exists(model):
        return None
    try:
        from huggingface_hub import snapshot_download

        return os.path.basename(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means the revision is unknown, which the record says
        return None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judging_record(cfg: ScoreConfig, official: JudgePrompts | None = None) -> dict[str, Any]:
    """The sha256 of every system prompt and user prompt template, per category and dimension, and the settings
    that decide how a score is read: what makes two runs' scores comparable. Under the official protocol, the
    benchmark's prompts (`official`) instead: their sha256 is the record's `prompts_sha256`."""
    prompts = {category: {"combine": p.combine, "dimensions": {
        name: {"images": d.images, "system_prompt_sha256": _sha256(d.system_prompt),
               "user_prompt_template_sha256": _sha256(d.user_prompt_template)}
        for name, d in p.dimensions.items()}} for category, p in (cfg.prompts or {}).items()}
    found = {"mode": cfg.mode, "answer_prefix": cfg.answer_prefix, "max_new_tokens": cfg.max_new_tokens,
             "do_sample": False, "batch_size": cfg.batch_size, "dtype": cfg.dtype,
             "image_max_side": cfg.image_max_side, "prompts": prompts,
             "prompts_sha256": _sha256(json.dumps(dataclasses.asdict(cfg)["prompts"], sort_keys=True))}
    if official is not None:
        # The benchmark's own prompts were asked, not `prompts` (which only name the categories then).
        found.update(protocol="official", prompts={}, prompts_sha256=official.sha256,
                     official_prompts={"benchmark": official.benchmark, "sha256": official.sha256,
                                       "sources": [dataclasses.asdict(s) for s in official.sources]})
    return found


VERSION_PACKAGES = ("torch", "torchvision", "transformers", "diffusers", "accelerate", "tokenizers", "safetensors",
                    "pillow")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide the results, as installed in this environment."""
    versions = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions

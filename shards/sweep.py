"""A sweep: many checkpoints (LoRA adapters, fine-tuned pipelines, other editors) scored in one launch, each a run
of its own under `<output_dir>/<name>/`, resumed and refused when changed exactly as a single run.

The `sweep:` section expands into those runs' configs here, alike for the launcher and both stages: each is the
config itself with the checkpoint's edit settings set over it (as `--set edit.KEY=VALUE` would) and its own output
folder. Standard library and PyYAML only.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import unicodedata
from typing import Any

from shards.config import ConfigError, RunConfig, SweepCheckpoint, load_config, overrides_from_args

SWEEP_OUTPUTS = ("sweep.json", "sweep.md", "sweep.html")
# What the sweep folder itself holds beside the runs' folders: no checkpoint may be named like them.
RESERVED = {"logs", "progress", "run.lock", "manifest.json", "report.json", *SWEEP_OUTPUTS}
ADAPTER_SUFFIX = ".safetensors"


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep."""

    name: str
    """The checkpoint's name, and its folder's under the sweep's output folder."""
    config: RunConfig
    """The run's own config: the sweep's, with the checkpoint's edit settings and its own output folder."""
    checkpoint: bool
    """False for the base run (the config's own editor)."""


def sweep_runs(config: RunConfig, overrides: dict[str, Any] | None = None) -> list[SweepRun]:
    """The sweep's runs: the base first (unless `sweep.base` is null), then each checkpoint, a glob's matches in
    name order (the sweep report orders them by step). A config without a `sweep:` section is one run, named "".

    Args:
        overrides: The ones `config` was loaded with (`--set`, `--output-dir` ...): every run gets them too.

    Raises:
        ConfigError: naming the checkpoint entry, for a glob that matches nothing, a name that cannot be a folder's,
            two checkpoints of one name, or a checkpoint's edit settings the config would refuse.
    """
    if config.sweep is None:
        return [SweepRun("", config, checkpoint=False)]
    wanted = [(config.sweep.base, {}, False)] if config.sweep.base is not None else []
    for i, entry in enumerate(config.sweep.checkpoints):
        wanted += [(name, settings, True) for name, settings in _expand(entry, config, f"sweep.checkpoints[{i}]")]
    seen: dict[str, int] = {}
    runs = []
    for name, settings, checkpoint in wanted:
        _check_name(name, config.source)
        if name in seen:
            raise ConfigError(f"{config.source}: sweep: two checkpoints are named '{name}'; give them distinct "
                              "`name`s")
        seen[name] = len(runs)
        # Adapters stay unfused in a sweep, so that swapping them leaves the base weights exact (edit_stage.editor).
        changes = {**(overrides or {}), **settings, "edit.fuse_lora": False, "sweep": None,
                   "output_dir": os.path.join(config.output_dir, name)}
        try:
            runs.append(SweepRun(name, load_config(config.source, changes), checkpoint))
        except ConfigError as e:
            raise ConfigError(f"sweep checkpoint '{name}': {e}") from None
    return runs


def _expand(entry: SweepCheckpoint, config: RunConfig, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, edit settings) of each checkpoint an entry stands for: one, or one per match of a glob."""
    if entry.lora is None and entry.model is None and entry.editor is None and not entry.edit:
        raise ConfigError(f"{config.source}: {where}: give a `lora`, a `model`, an `editor` or `edit` settings")
    base = os.path.dirname(config.source)
    paths = [entry.lora]
    if entry.lora is not None and _is_glob(entry.lora):
        paths = sorted(glob.glob(os.path.join(base, os.path.expanduser(entry.lora))))
        if not paths:
            raise ConfigError(f"{config.source}: {where}.lora: '{entry.lora}' matches nothing (relative to {base})")
        if entry.name is not None and len(paths) > 1:
            raise ConfigError(f"{config.source}: {where}: `name` '{entry.name}' cannot name the {len(paths)} "
                              f"matches of '{entry.lora}'; leave it out (each is named after its folder or file)")
    editor = _editor(entry.editor, base, f"{where}.editor") if entry.editor is not None else None
    found = []
    for path in paths:
        settings = {"edit": editor} if editor is not None else {}
        settings.update({f"edit.{key}": value for key, value in (entry.edit or {}).items()})
        if entry.model is not None:
            settings["edit.model"] = entry.model
        if path is not None:
            adapter = {"path": path, "scale": entry.scale, "weight_name": entry.weight_name}
            settings["edit.lora"] = [dataclasses.asdict(a) for a in config.edit.lora] + [adapter]
        named = entry.name or default_name(path if path is not None else entry.model or entry.editor)
        if named is None:
            raise ConfigError(f"{config.source}: {where}: give it a `name` (it has only `edit` settings)")
        found.append((named, settings))
    return found


def _editor(path: str, base: str, where: str) -> dict[str, Any]:
    """The `edit` section of another editor's config file, its paths resolved (relative to that file)."""
    from shards.config import to_dict

    source = os.path.join(base, os.path.expanduser(path))
    try:
        return to_dict(load_config(source))["edit"]
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def default_name(path: str | None) -> str | None:
    """A checkpoint's name from its adapter or model: the folder's or file's name (without `.safetensors`), or a
    hub id's last part."""
    if path is None:
        return None
    name = os.path.basename(os.path.normpath(path))
    for suffix in (ADAPTER_SUFFIX, ".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_name(name: str, source: str) -> None:
    """A checkpoint's name is its folder's: any script, but one plain folder name that is not the sweep's own."""
    problem = None
    if not name or name in (".", "..") or name.startswith("."):
        problem = "is empty or starts with '.'"
    elif any(c in name for c in "/\\") or any(unicodedata.category(c).startswith("C") for c in name):
        problem = "holds a path separator or a control character"
    elif name in RESERVED:
        problem = "is a file or folder the sweep's folder holds itself"
    elif len(name.encode("utf-8")) > 200:
        problem = "is longer than 200 bytes"
    if problem:
        raise ConfigError(f"{source}: sweep: the checkpoint name {name!r} {problem}; it names the checkpoint's "
                          "folder: give the entry another `name`")


def add_checkpoint_argument(parser) -> None:
    """A stage's `--checkpoint NAME`, repeated: the sweep's runs it does. One name a flag, since a name may hold
    any character a folder's may (a comma too)."""
    parser.add_argument("--checkpoint", dest="checkpoints", action="append", metavar="NAME",
                        help="a sweep: only this of its runs, by name; repeat it for several (the launcher names "
                             "the runs it expanded the sweep to)")


def checkpoint_arguments(names: list[str]) -> list[str]:
    """The stage arguments that choose these runs (`add_checkpoint_argument`)."""
    return [arg for name in names for arg in ("--checkpoint", name)]


def stage_runs(args) -> tuple[RunConfig, list[SweepRun]]:
    """A stage's config, loaded with its command line's overrides, and the runs this stage job does: the one run,
    or the sweep's runs its `--checkpoint` flags name (all without them). A sweep into a single run's folder, or
    a single run into a sweep's, is refused first (`check_sweep_folder`)."""
    overrides = overrides_from_args(args)
    config = load_config(args.config, overrides)
    check_sweep_folder(config)
    return config, chosen_runs(sweep_runs(config, overrides), args.checkpoints)


def chosen_runs(runs: list[SweepRun], names: list[str] | None) -> list[SweepRun]:
    """The runs `--checkpoint` names (all without it).

    Raises:
        ConfigError: naming each name the sweep has no run of.
    """
    if names is None:
        return runs
    unknown = [n for n in names if n not in {run.name for run in runs}]
    if unknown:
        raise ConfigError(f"--checkpoint: the sweep has no checkpoint named {', '.join(map(repr, unknown))}")
    return [run for run in runs if run.name in names]


def run_folders(config: RunConfig, runs: list[SweepRun]) -> list[str]:
    """The folders a stage holds: a sweep's own and each of its runs' (a single run's one)."""
    return list(dict.fromkeys([config.output_dir] + [run.config.output_dir for run in runs]))


def check_sweep_folder(config: RunConfig) -> None:
    """Refuse a sweep into a folder that holds a single run's work, and a single run into a sweep's folder: the
    two would write over each other's records.

    Raises:
        ConfigError: naming the folder and what it holds.
    """
    root = config.output_dir
    if not os.path.isdir(root):
        return
    if config.sweep is not None:
        held = [name for name in ("manifest.json", "report.json", "progress")
                if os.path.exists(os.path.join(root, name))]
        if held:
            raise ConfigError(f"{root}: holds a single run's work ({', '.join(held)}); a sweep writes each "
                              "checkpoint's run into a folder of its own inside its output folder: give it another")
        return
    runs = [name for name in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, name, "progress")) and name != "progress"]
    if runs or any(os.path.exists(os.path.join(root, name)) for name in SWEEP_OUTPUTS):
        shown = f"the runs {', '.join(runs[:5])}" if runs else "sweep.json"
        raise ConfigError(f"{root}: holds a sweep ({shown}); run it with its sweep config, or give this run another "
                          "output folder")

"""How the launcher runs a sweep (`shards.sweep`): what it does not combine with, an edit job per editor
environment, and the runs every job and the report are given, fixed once by the launcher (a checkpoint a trainer
saves meanwhile waits for the next launch)."""

from __future__ import annotations

import argparse

from launch.envs import prepare_environments
from shards.config import ConfigError
from shards.sweep import SweepRun


def check_sweep_args(config, args: argparse.Namespace) -> None:
    """What a sweep does not combine with (yet), refused before anything is written."""
    if config.sweep is None:
        return
    for given, flag in ((args.edits, "--edits"), (args.judge_gpus, "--judge-gpus"), (args.nnodes > 1, "--nnodes")):
        if given:
            raise ConfigError(f"{flag}: not with a sweep (the config's `sweep:` section); run the sweep on one node, "
                              "its stages one after the other")


def editor_environments(runs: list[SweepRun], pythons: dict[str, str]) -> dict[str, list[str]]:
    """A sweep's edit environments: each interpreter with the names of the runs it edits (editor families bring
    environments of their own), built as a stage's are."""
    found: dict[str, list[str]] = {}
    for one in runs:
        env = one.config.edit.env
        python = pythons["edit"] if env == runs[0].config.edit.env else \
            prepare_environments(one.config, ("edit",))["edit"]
        found.setdefault(python, []).append(one.name)
    return found


def stage_jobs(pythons: dict[str, str], editors: dict[str, list[str]]) -> list[tuple[str, str, list[str] | None]]:
    """(stage, interpreter, the sweep's runs it does, None for a single run) of each job, in order: one edit job
    per editor environment of a sweep, then the score job. Every job of a sweep is told its runs by name: a glob
    that matches more by the time a stage starts (a training run saving checkpoints) must not add runs to it."""
    if not editors:
        return [("edit", pythons["edit"], None), ("score", pythons["score"], None)]
    return [("edit", python, names) for python, names in editors.items()] + [("score", pythons["score"],
                                                                              swept(editors))]


def swept(editors: dict[str, list[str]]) -> list[str]:
    """The names of a sweep's runs, as the launcher expanded them once (`editor_environments`)."""
    return [name for names in editors.values() for name in names]

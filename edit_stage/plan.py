"""What an edit run works on, settled before any model loads: the selected samples and their images checked, the
output folder checked against this run, and the shard parts a resumed run keeps (their checksums verified).

Both the edit stage and the import of brought edits plan this way.
"""

from __future__ import annotations

from dataclasses import dataclass

from edit_stage.speed import check_speed
from shards.config import RunConfig
from shards.dataset import ImageCheck, Sample, checked_run_samples
from shards.folder.identity import check_resumable
from shards.folder.records import ResumeError, check_restartable, restart
from shards.runtime.dist import DistState, barrier, map_in_parallel
from shards.store import read_parts, shard_problem


@dataclass(frozen=True)
class Plan:
    """What this run works on, settled before any process group or model exists."""

    samples: list[Sample]
    """The selected samples, in dataset order."""
    images: ImageCheck
    """Their original images' digests, and the samples whose image cannot be used."""
    notes: list[str]
    """What the check of the output folder could not compare, to be said once logging is set up."""


def plan_run(config: RunConfig, restart_requested: bool) -> Plan:
    """Validate the dataset and every selected image, and refuse an output folder of a different run."""
    check_speed(config.edit, config.source)
    found, images = checked_run_samples(config)
    samples = found.selected
    if restart_requested:
        check_restartable(config.output_dir, "edit")    # every rank refuses alike, before rank 0 removes anything
        return Plan(samples=samples, images=images, notes=[])
    return Plan(samples=samples, images=images, notes=check_resumable(config, "edit"))


def resume_point(config: RunConfig, state: DistState, plan: Plan, restart_requested: bool, log) -> list[dict]:
    """Start over if asked (rank 0), then return the recorded shard parts whose checksums verify.

    Raises:
        ResumeError: if a sample already edited has a different original image now.
    """
    if restart_requested and state.is_main:
        removed = restart(config.output_dir, "edit")
        log.info("--restart: removed %s", ", ".join(removed) or "nothing (the folder had no edits)")
    barrier()  # nobody reads the journals while rank 0 removes them
    recorded = read_parts(config.output_dir)
    for line in recorded.skipped:
        log.warning("ignoring %s", line)
    problems = map_in_parallel(recorded.records, lambda part: shard_problem(config.output_dir, part), state)
    trusted = []
    for part, problem in zip(recorded.records, problems):
        if problem:
            log.warning("not trusting %s: its samples are edited again", problem)
        else:
            trusted.append(part)
    edited = edited_entries(trusted)
    changed = [s.id for s in plan.samples
               if s.id in edited and edited[s.id]["image_sha256"] != plan.images.sha256.get(s.id)]
    if changed:
        raise ResumeError(f"{config.dataset.path}: the image of {len(changed)} already edited sample(s) changed "
                          f"since: {', '.join(changed[:10])}; run with --restart to edit everything again")
    return trusted


def edited_entries(parts: list[dict]) -> dict[str, dict]:
    """Sample id -> its manifest entry in `parts` (the first part that holds it, in journal order)."""
    found: dict[str, dict] = {}
    for part in parts:
        for entry in part["samples"]:
            found.setdefault(entry["id"], entry)
    return found

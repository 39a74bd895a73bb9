"""Edit stage entry point: each rank edits its share of the samples and writes safetensors shard parts.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Run the same command again on the same output directory to resume, with any number of ranks: samples held by
verified shard parts are kept and only the rest are edited. `--restart` discards the folder's edits instead.
Rank 0 writes `<output-dir>/manifest.json` once every rank has finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from edit_stage.manifest import build_manifest, editor_record
from edit_stage.plan import Plan, edited_entries, plan_run, resume_point
from shards.config import EditConfig, RunConfig, stage_argument_parser
from shards.dataset import Sample, derive_seed
from shards.events import Terminated, sigterm_raises
from shards.folder.identity import digest_cache, run_identity
from shards.folder.liveness import rank_dies_with_torchrun
from shards.folder.lock import release, take_for_stage
from shards.folder.records import begin_attempt, end_attempt
from shards.manifest import MANIFEST_NAME, write_manifest
from shards.runtime.dist import DistState, WorkQueue, all_gather_json, barrier, finish, init_distributed, teardown
from shards.runtime.hub import fetch_once
from shards.runtime.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.runtime.nodes import check_nodes_agree
from shards.store import ShardWriter
from shards.sweep import SweepRun, add_checkpoint_argument, run_folders, stage_runs


def ensure_tiny_pipeline(runs: list[SweepRun], state: DistState) -> None:
    """Demo and tests: rank 0 builds each tiny random-weight pipeline the runs use that is missing; the others
    wait."""
    for cfg in {run.config.edit.model: run.config.edit for run in runs if run.config.edit.build_tiny}.values():
        if state.is_main and not os.path.exists(os.path.join(cfg.model, "model_index.json")):
            from edit_stage.families import builds

            builds(cfg.pipeline).build_tiny(cfg.model, cfg.pipeline)
    barrier()


@dataclass
class RunWork:
    """One run as this stage sees it: a single run, or one checkpoint of a sweep."""

    run: SweepRun
    plan: Plan
    trusted: list[dict] = field(default_factory=list)
    """The shard parts a resumed run keeps (checksums verified)."""
    todo: list[Sample] = field(default_factory=list)
    identity: dict = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        return self.run.config


def edit_share(works: list[RunWork], state: DistState, log) -> list[dict[str, Any]]:
    """Edit samples from one queue over every run's samples until none is left, closing and recording a shard
    part every `samples_per_shard` images. A rank that finishes a sample takes the next one nobody has, of
    whichever run it belongs to; the queue goes run after run, so a rank moves its editor to each checkpoint
    once (`edit_stage.editor`).

    Returns:
        This rank's share of each run: its parts (each with its samples' manifest entries), samples done, busy
        and load seconds.
    """
    from edit_stage.editor import Editor
    from edit_stage.pipeline import edit_sample, manifest_entry

    items = [(work, sample) for work in works for sample in work.todo]
    cfgs = {id(w): fetched(w.config, state, log) for w in works}   # every rank together: one fetches, all wait
    queue = WorkQueue(len(items), state, "edit")
    editor = Editor(state.device, log)
    writers = {id(w): ShardWriter(w.config.output_dir, state.rank, state.world_size, w.config.edit.samples_per_shard)
               for w in works}
    shares = {id(w): {"rank": state.rank, "samples": 0, "busy_s": 0.0} for w in works}
    steps_total = max(w.config.edit.num_inference_steps for w in works)
    with contextlib.ExitStack() as stack, sigterm_raises():
        for writer in writers.values():
            stack.enter_context(writer)
        bar = stack.enter_context(progress(state, "edit", "samples", len(items)))
        steps = stack.enter_context(progress(state, "edit", "denoise", steps_total, slot=1, leave=False))
        previous = None
        for position in queue:
            work, sample = items[position]
            if previous is not None and previous is not work:
                writers[id(previous)].flush()    # the queue never comes back to a run: its last part is closed now
            previous = work
            cfg = cfgs[id(work)]
            pipe = editor.use(cfg, digest_cache(work.config.output_dir))
            seed = derive_seed(cfg.seed, sample.id)
            begin = time.perf_counter()
            image = edit_sample(pipe, cfg, sample, os.path.dirname(work.config.dataset.path), seed, steps)
            seconds = time.perf_counter() - begin
            writers[id(work)].add(manifest_entry(sample, seed, work.plan.images.sha256[sample.id], image, seconds),
                                  image)
            share = shares[id(work)]
            share["busy_s"], share["samples"] = share["busy_s"] + time.perf_counter() - begin, share["samples"] + 1
            log.info("edited %s%s/%s in %.1fs (%dx%d)", f"{work.run.name}: " if work.run.name else "",
                     sample.category, sample.id, seconds, image.shape[1], image.shape[0], extra=EVERY_RANK)
            bar.update(1)
    return [{**shares[id(w)], "busy_s": round(shares[id(w)]["busy_s"], 3), "parts": writers[id(w)].parts,
             "load_s": round(editor.load_s, 3), "editor_loads": editor.loads, "editor_swaps": editor.swaps}
            for w in works]


def fetched(config: RunConfig, state: DistState, log) -> EditConfig:
    """The edit settings with a hub checkpoint, and hub LoRA adapters, replaced by their local snapshots, fetched
    by one rank per cache while the others wait."""
    shared = config.distributed.shared_hub_cache
    model = fetch_once(config.edit.model, state, shared, log, "editor")
    lora = [dataclasses.replace(a, path=fetch_once(a.path, state, shared, log, "LoRA")) for a in config.edit.lora]
    return dataclasses.replace(config.edit, model=model, lora=lora)


def parse_args(argv: list[str] | None):
    parser = stage_argument_parser("edit_stage", __doc__.splitlines()[0])
    add_checkpoint_argument(parser)    # the launcher runs each editor environment's own
    return parser.parse_args(argv)


@record
def main(argv: list[str] | None = None) -> None:
    """Plan the runs, join the job, resume each from verified parts, edit the rest, gather, write the manifests."""
    rank_dies_with_torchrun()    # before anything is written: no rank outlives its torchrun
    start = time.perf_counter()
    args = parse_args(argv)
    with exit_on_input_error():
        config, runs = stage_runs(args)
        works = [RunWork(run, plan_run(run.config, args.restart)) for run in runs]
        state = init_distributed(config.distributed.device, config.distributed.timeout_s)
    folders = run_folders(config, runs)
    run_id = None
    try:
        with exit_on_input_error():
            check_nodes_agree(config, "edit", state)   # before any lock, fetch or model
        with exit_on_input_error():
            run_id = take_for_stage(folders, "edit", state.rank, lambda share: all_gather_json(share, state))
        log = setup_logging("edit", state, config.output_dir)
        with exit_on_input_error():
            for work in works:
                plan_resume(work, state, args.restart, log)
        if any(work.todo for work in works):
            ensure_tiny_pipeline([w.run for w in works if w.todo], state)
        for work in works:
            begin(work, state)
        barrier()  # the records exist before any rank opens a journal: every file in a folder is accounted for
        todo = [w for w in works if w.todo]
        shares = all_gather_json(edit_share(todo, state, log) if todo else [], state)
        if state.is_main:
            for i, work in enumerate(todo):
                finish_run(work, [share[i] for share in shares], start, log)
            for work in works:
                if not work.todo:
                    finish_run(work, [], start, log)
        finish()
    except Terminated as e:
        log.warning("%s; finished images are kept in closed shard parts", e, extra=EVERY_RANK)
        raise SystemExit(143) from None
    finally:
        if run_id:
            for folder in folders:
                release(folder, run_id)
        teardown()


def plan_resume(work: RunWork, state: DistState, restart_requested: bool, log) -> None:
    """The run's verified parts and the samples left to edit, said in the log."""
    work.trusted = resume_point(work.config, state, work.plan, restart_requested, log)
    plan = work.plan
    done = edited_entries(work.trusted).keys() & {s.id for s in plan.samples}
    work.todo = [s for s in plan.samples if s.id not in done and s.id not in plan.images.failed]
    named = f"{work.run.name}: " if work.run.name else ""
    log.info("%s%d samples selected: %d already edited (verified), %d failed to load, %d to edit on %d ranks "
             "(each takes the next sample as it finishes one)", named, len(plan.samples), len(done),
             len(plan.images.failed), len(work.todo), state.world_size, extra=EVERY_RANK)
    for sample_id, reason in plan.images.failed.items():
        log.warning("%ssample '%s' is recorded as failed: %s", named, sample_id, reason)
    for note in plan.notes:
        log.warning("%s%s", named, note)


def begin(work: RunWork, state: DistState) -> None:
    """Rank 0 records the run's identity and this attempt (after the tiny model is built, so that its fingerprint
    is recorded)."""
    if state.is_main:
        work.identity = run_identity(work.config, "edit")
        done = len(edited_entries(work.trusted).keys() & {s.id for s in work.plan.samples})
        begin_attempt(work.config.output_dir, "edit", work.identity, world_size=state.world_size,
                      done_before=done, to_do=len(work.todo))


def finish_run(work: RunWork, shares: list[dict], start: float, log) -> None:
    """Rank 0: the run's attempt ended, its manifest written from the kept and the new parts."""
    config = work.config
    ranks = [{k: v for k, v in share.items() if k != "parts"} for share in shares]
    attempts = end_attempt(config.output_dir, "edit", outputs=[MANIFEST_NAME], edited=len(work.todo),
                           elapsed_s=round(time.perf_counter() - start, 3), ranks=ranks)
    parts = work.trusted + [p for share in shares for p in share["parts"]]
    manifest = build_manifest(config, work.plan, parts, attempts, work.identity, editor_record(config, work.identity))
    path = write_manifest(config.output_dir, manifest)
    log.info("wrote %s (%d samples, %d failed, in %d shards)", path, len(manifest["samples"]),
             len(work.plan.images.failed), len(manifest["shards"]))

"""Edit stage entry point: each rank edits its share of the samples and writes safetensors shard parts.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Run the same command again on the same output directory to resume, with any number of ranks: samples held by
verified shard parts are kept and only the rest are edited. `--restart` discards the folder's edits instead.
Rank 0 writes `<output-dir>/manifest.json` once every rank has finished.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from edit_stage.manifest import build_manifest, editor_record
from edit_stage.plan import Plan, edited_entries, plan_run, resume_point
from shards.config import EditConfig, RunConfig, load_config, overrides_from_args, stage_argument_parser
from shards.dataset import Sample, derive_seed
from shards.events import Terminated, sigterm_raises
from shards.folder.identity import run_identity
from shards.folder.liveness import rank_dies_with_torchrun
from shards.folder.lock import release, take_for_stage
from shards.folder.records import begin_attempt, end_attempt
from shards.manifest import MANIFEST_NAME, write_manifest
from shards.runtime.dist import DistState, WorkQueue, all_gather_json, barrier, finish, init_distributed, teardown
from shards.runtime.hub import fetch_once
from shards.runtime.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.runtime.nodes import check_nodes_agree
from shards.store import ShardWriter


def ensure_tiny_pipeline(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight pipeline if it is missing; the others wait."""
    cfg = config.edit
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "model_index.json")):
        from edit_stage.families import builds

        builds(cfg.pipeline).build_tiny(cfg.model, cfg.pipeline)
    barrier()


def edit_share(config: RunConfig, state: DistState, todo: list[Sample], plan: Plan, log) -> dict[str, Any]:
    """Edit samples from the shared queue until none is left, closing and recording a shard part every
    `samples_per_shard` images. A rank that finishes a sample takes the next one nobody has.

    Returns:
        This rank's parts (each with its samples' manifest entries), samples done, busy and load seconds.
    """
    from edit_stage.pipeline import edit_sample, load_pipeline, manifest_entry

    queue = WorkQueue(len(todo), state, "edit")
    start = time.perf_counter()
    pipe = load_pipeline(fetched(config, state, log), state.device)
    loaded, busy, done = time.perf_counter() - start, 0.0, 0
    root = os.path.dirname(config.dataset.path)
    writer = ShardWriter(config.output_dir, state.rank, state.world_size, config.edit.samples_per_shard)
    with writer, sigterm_raises(), progress(state, "edit", "samples", len(todo)) as bar, \
            progress(state, "edit", "denoise", config.edit.num_inference_steps, slot=1, leave=False) as steps:
        for position in queue:
            sample = todo[position]
            seed = derive_seed(config.edit.seed, sample.id)
            begin = time.perf_counter()
            image = edit_sample(pipe, config.edit, sample, root, seed, steps)
            seconds = time.perf_counter() - begin
            writer.add(manifest_entry(sample, seed, plan.images.sha256[sample.id], image, seconds), image)
            busy, done = busy + time.perf_counter() - begin, done + 1
            log.info("edited %s/%s in %.1fs (%dx%d)", sample.category, sample.id, seconds,
                     image.shape[1], image.shape[0], extra=EVERY_RANK)
            bar.update(1)
    return {"parts": writer.parts, "rank": state.rank, "samples": done, "busy_s": round(busy, 3),
            "load_s": round(loaded, 3)}


def fetched(config: RunConfig, state: DistState, log) -> EditConfig:
    """The edit settings with a hub checkpoint, and hub LoRA adapters, replaced by their local snapshots, fetched
    by one rank per cache while the others wait."""
    shared = config.distributed.shared_hub_cache
    model = fetch_once(config.edit.model, state, shared, log, "editor")
    lora = [dataclasses.replace(a, path=fetch_once(a.path, state, shared, log, "LoRA")) for a in config.edit.lora]
    return dataclasses.replace(config.edit, model=model, lora=lora)


@record
def main(argv: list[str] | None = None) -> None:
    """Plan the run, join the job, resume from verified parts, edit the rest, gather, write the manifest."""
    rank_dies_with_torchrun()    # before anything is written: no rank outlives its torchrun
    start = time.perf_counter()
    args = stage_argument_parser("edit_stage", __doc__.splitlines()[0]).parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        plan = plan_run(config, args.restart)
        state = init_distributed(config.distributed.device, config.distributed.timeout_s)
    run_id = None
    try:
        with exit_on_input_error():
            check_nodes_agree(config, "edit", state)   # before any lock, fetch or model
        with exit_on_input_error():
            run_id = take_for_stage(config.output_dir, "edit", state.rank,
                                    lambda share: all_gather_json(share, state))
        log = setup_logging("edit", state, config.output_dir)
        with exit_on_input_error():
            trusted = resume_point(config, state, plan, args.restart, log)
        done = edited_entries(trusted).keys() & {s.id for s in plan.samples}
        todo = [s for s in plan.samples if s.id not in done and s.id not in plan.images.failed]
        log.info("%d samples selected: %d already edited (verified), %d failed to load, %d to edit on %d ranks "
                 "(each takes the next sample as it finishes one)", len(plan.samples), len(done),
                 len(plan.images.failed), len(todo), state.world_size, extra=EVERY_RANK)
        for sample_id, reason in plan.images.failed.items():
            log.warning("sample '%s' is recorded as failed: %s", sample_id, reason)
        for note in plan.notes:
            log.warning("%s", note)
        if todo:
            ensure_tiny_pipeline(config, state)
        identity = run_identity(config, "edit") if state.is_main else {}
        if state.is_main:  # after the tiny model is built, so that its fingerprint is recorded
            begin_attempt(config.output_dir, "edit", identity, world_size=state.world_size,
                          done_before=len(done), to_do=len(todo))
        barrier()  # the record exists before any rank opens a journal: every file in the folder is accounted for
        work = edit_share(config, state, todo, plan, log) if todo else {"parts": [], "rank": state.rank,
                                                                          "samples": 0, "busy_s": 0.0, "load_s": 0.0}
        shares = all_gather_json(work, state)
        if state.is_main:
            ranks = [{k: v for k, v in share.items() if k != "parts"} for share in shares]
            attempts = end_attempt(config.output_dir, "edit", outputs=[MANIFEST_NAME], edited=len(todo),
                                   elapsed_s=round(time.perf_counter() - start, 3), ranks=ranks)
            manifest = build_manifest(config, plan, trusted + [p for share in shares for p in share["parts"]],
                                      attempts, identity, editor_record(config, identity))
            path = write_manifest(config.output_dir, manifest)
            log.info("wrote %s (%d samples, %d failed, in %d shards)", path, len(manifest["samples"]),
                     len(plan.images.failed), len(manifest["shards"]))
        finish()
    except Terminated as e:
        log.warning("%s; finished images are kept in closed shard parts", e, extra=EVERY_RANK)
        raise SystemExit(143) from None
    finally:
        if run_id:
            release(config.output_dir, run_id)
        teardown()

"""Edit stage entry point: each rank edits its share of the samples and writes safetensors shards.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Rank 0 writes `<output-dir>/manifest.json` once every rank has written its shards.
"""

from __future__ import annotations

import os
import time

from torch.distributed.elastic.multiprocessing.errors import record

from shards.config import RunConfig, load_config, overrides_from_args, stage_argument_parser, to_dict
from shards.dataset import Sample, derive_seed, load_dataset, select_samples, split_for_rank
from shards.dist import DistState, all_gather_json, barrier, init_distributed, teardown
from shards.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.store import ShardWriter, package_versions, sha256_file, write_manifest


def selected_samples(config: RunConfig) -> list[Sample]:
    """The validated dataset, filtered by the config: all checks happen here, before any model loads."""
    samples = load_dataset(config.dataset.path, categories=list(config.score.prompts))
    return select_samples(samples, config.dataset.categories, config.dataset.limit)


def ensure_tiny_pipeline(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight pipeline if it is missing; the others wait."""
    cfg = config.edit
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "model_index.json")):
        from edit_stage.tiny import build_tiny_pipeline

        build_tiny_pipeline(cfg.model, plus=cfg.pipeline == "QwenImageEditPlusPipeline")
    barrier()


def edit_share(config: RunConfig, state: DistState, samples: list[Sample], log) -> ShardWriter:
    """Edit this rank's samples, closing a shard part every `samples_per_shard` images."""
    from edit_stage.pipeline import edit_sample, load_pipeline, manifest_entry

    pipe = load_pipeline(config.edit, state.device)
    root = os.path.dirname(config.dataset.path)
    writer = ShardWriter(config.output_dir, state.rank, state.world_size, config.edit.samples_per_shard)
    with progress(state, "edit", "samples", len(samples)) as bar, \
            progress(state, "edit", "denoise", config.edit.num_inference_steps, slot=1, leave=False) as steps:
        for sample in samples:
            seed = derive_seed(config.edit.seed, sample.id)
            start = time.perf_counter()
            image = edit_sample(pipe, config.edit, sample, root, seed, steps)
            seconds = time.perf_counter() - start
            writer.add(manifest_entry(sample, seed, image, seconds), image)
            log.info("edited %s/%s in %.1fs (%dx%d)", sample.category, sample.id, seconds,
                     image.shape[1], image.shape[0], extra=EVERY_RANK)
            bar.update(1)
    writer.flush()
    return writer


def build_manifest(config: RunConfig, state: DistState, samples: list[Sample], shares: list[dict],
                   seconds: float) -> dict:
    """One manifest from every rank's shards and samples, samples in dataset order."""
    by_id = {entry["id"]: entry for share in shares for entry in share["samples"]}
    return {
        "world_size": state.world_size,
        "dataset": {"path": config.dataset.path, "root": os.path.dirname(config.dataset.path),
                    "sha256": sha256_file(config.dataset.path)},
        "model": {"path": config.edit.model, "pipeline": config.edit.pipeline},
        "versions": package_versions(),
        "config": to_dict(config),
        "elapsed_s": round(seconds, 3),
        "shards": [shard for share in shares for shard in share["shards"]],
        "samples": [by_id[s.id] for s in samples],
    }


@record
def main(argv: list[str] | None = None) -> None:
    """Load config and dataset, join the job, edit this rank's share, gather, write the manifest."""
    start = time.perf_counter()
    args = stage_argument_parser("edit_stage", __doc__.splitlines()[0]).parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        samples = selected_samples(config)
    state = init_distributed(config.distributed.timeout_s)
    try:
        log = setup_logging("edit", state, config.output_dir)
        mine = split_for_rank(samples, state.rank, state.world_size)
        log.info("%d samples on %d ranks; this rank edits %d", len(samples), state.world_size, len(mine),
                 extra=EVERY_RANK)
        ensure_tiny_pipeline(config, state)
        writer = edit_share(config, state, mine, log)
        shares = all_gather_json({"shards": writer.shards, "samples": writer.samples}, state)
        if state.is_main:
            path = write_manifest(config.output_dir, build_manifest(config, state, samples, shares,
                                                                    time.perf_counter() - start))
            log.info("wrote %s (%d samples in %d shards)", path, len(samples),
                     sum(len(s["shards"]) for s in shares))
    finally:
        teardown()

"""Score stage entry point: each rank judges its share of the edited images; rank 0 writes the report.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Reads `<output-dir>/manifest.json` from the edit stage, verifies the shards it reads, and writes
`report.json`, `results.csv` and `report.md` into the same folder.
"""

from __future__ import annotations

import os
import time
from typing import Any

from PIL import Image
from torch.distributed.elastic.multiprocessing.errors import record

from shards.config import RunConfig, load_config, overrides_from_args, stage_argument_parser, to_dict
from shards.dataset import DatasetError, select_samples, split_for_rank
from shards.dist import DistState, all_gather_json, barrier, init_distributed, teardown
from shards.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.store import package_versions, read_image, read_manifest, verify_shards


def selected_entries(config: RunConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest samples this run judges; each must have judge prompts. Checked before any model loads."""
    entries = select_samples(manifest["samples"], config.dataset.categories, config.dataset.limit,
                             category_of=lambda entry: entry["category"])
    for entry in entries:
        if entry["category"] not in config.score.prompts:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has category '{entry['category']}', "
                               f"which has no judge prompts in {config.source} (score.prompts)")
    return entries


def ensure_tiny_judge(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight judge if it is missing; the others wait."""
    cfg = config.score
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "config.json")):
        from score_stage.tiny import build_tiny_judge

        build_tiny_judge(cfg.model, moe=True)
    barrier()


def judge_share(config: RunConfig, state: DistState, entries: list[dict], log) -> list[dict[str, Any]]:
    """Judge this rank's samples in batches; one flushed line per sample."""
    from score_stage.judge import conversation, generate_answers, load_judge
    from score_stage.parsing import extract_score

    model, processor = load_judge(config.score, state.device)
    results, size = [], config.score.batch_size
    with progress(state, "score", "judged", len(entries)) as bar:
        for start in range(0, len(entries), size):
            batch = entries[start: start + size]
            chats = [conversation(config.score.prompts[e["category"]], e, _edited(config, e)) for e in batch]
            for entry, answer in zip(batch, generate_answers(model, processor, chats, config.score.max_new_tokens)):
                score = extract_score(answer)
                results.append({"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
                                "score": score, "status": "ok" if score is not None else "unparsed",
                                "response": answer, "rank": state.rank})
                log.info("%s/%s score=%s | %s", entry["category"], entry["id"],
                         "unparsed" if score is None else f"{score:g}", " ".join(answer.split())[:80],
                         extra=EVERY_RANK)
            bar.update(len(batch))
    return results


def _edited(config: RunConfig, entry: dict[str, Any]) -> Image.Image:
    return Image.fromarray(read_image(config.output_dir, entry).numpy(), mode="RGB")


def write_outputs(config: RunConfig, manifest: dict, entries: list[dict], shares: list[list[dict]],
                  state: DistState, seconds: float, log) -> None:
    """Rank 0: the report in manifest order, its files, and the summary lines."""
    from score_stage.report import build_report, markdown_table, write_report

    by_id = {r["id"]: r for share in shares for r in share}
    results = [by_id[e["id"]] for e in entries]
    report = build_report(
        results, list(config.score.prompts),
        edit_model=manifest["model"]["path"], judge_model=config.score.model,
        world_size={"edit": manifest["world_size"], "score": state.world_size},
        versions={"edit": manifest["versions"], "score": package_versions()},
        elapsed_s={"edit": manifest["elapsed_s"], "score": round(seconds, 3)},
        config=to_dict(config),
    )
    paths = write_report(config.output_dir, report)
    o = report["overall"]
    log.info("judged %d samples: mean %s, min %s, max %s, unparsed %d", o["count"],
             *(("–" if o[k] is None else f"{o[k]:.3f}") for k in ("mean", "min", "max")), o["unparsed"])
    log.info("per category:\n%s", markdown_table(report))
    log.info("report: %s", paths["json"])


@record
def main(argv: list[str] | None = None) -> None:
    """Load config and manifest, join the job, verify and judge this rank's share, gather, write the report."""
    start = time.perf_counter()
    args = stage_argument_parser("score_stage", __doc__.splitlines()[0]).parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        manifest = read_manifest(config.output_dir)
        entries = selected_entries(config, manifest)
    state = init_distributed(config.distributed.timeout_s)
    try:
        log = setup_logging("score", state, config.output_dir)
        mine = split_for_rank(entries, state.rank, state.world_size)
        needed = {e["shard"] for e in mine}
        with exit_on_input_error():
            verify_shards(config.output_dir, [s for s in manifest["shards"] if s["path"] in needed])
        log.info("%d samples on %d ranks; this rank judges %d (shards verified)", len(entries),
                 state.world_size, len(mine), extra=EVERY_RANK)
        ensure_tiny_judge(config, state)
        shares = all_gather_json(judge_share(config, state, mine, log), state)
        if state.is_main:
            write_outputs(config, manifest, entries, shares, state, time.perf_counter() - start, log)
    finally:
        teardown()

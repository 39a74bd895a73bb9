"""Score stage entry point: each rank judges its share of the edited images; rank 0 writes the report.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Reads `<output-dir>/manifest.json` from the edit stage, verifies every shard it needs before judging anything,
and writes `report.json`, `results.csv` and `report.md` into the same folder. Each judged sample is appended to the
rank's journal as soon as its batch is done: run the same command again (with any number of ranks) to resume,
judging only what is missing. `--restart` discards the folder's judgements instead.
"""

from __future__ import annotations

import os
import time
from typing import Any

from PIL import Image
from torch.distributed.elastic.multiprocessing.errors import record

from shards.config import RunConfig, load_config, overrides_from_args, stage_argument_parser, to_dict
from shards.dataset import DatasetError, select_samples, split_for_rank
from shards.dist import DistState, all_gather_json, barrier, check_in_parallel, init_distributed, teardown
from shards.journal import JournalWriter, journal_path, journal_paths, read_journals
from shards.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.resume import begin_attempt, check_identity, end_attempt, restart, run_identity
from shards.store import ShardError, package_versions, read_image, read_manifest, shard_problem


def selected_entries(config: RunConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest samples this run reports on; each must have judge prompts. Checked before any model loads."""
    entries = select_samples(manifest["samples"], config.dataset.categories, config.dataset.limit,
                             category_of=lambda entry: entry["category"])
    for entry in entries:
        if entry["category"] not in config.score.prompts:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has category '{entry['category']}', "
                               f"which has no judge prompts in {config.source} (score.prompts)")
    return entries


def verify_shards_before_judging(config: RunConfig, manifest: dict, entries: list[dict], state: DistState) -> None:
    """Every shard the run reads is checked (each rank a share); any rank's finding stops every rank.

    Raises:
        ShardError: naming each shard that is missing or does not match its checksum.
    """
    needed = {e["shard"] for e in entries if e["status"] == "ok"}
    shards = [s for s in manifest["shards"] if s["path"] in needed]
    problems = [p for p in check_in_parallel(shards, lambda s: shard_problem(config.output_dir, s), state) if p]
    if problems:
        raise ShardError("; ".join(problems) + f" (listed in {config.output_dir}/manifest.json); nothing was judged")


def resume_point(config: RunConfig, state: DistState, entries: list[dict], restart_requested: bool,
                 log) -> dict[str, dict]:
    """Start over if asked (rank 0), then return the recorded judgements still valid for this run's entries.

    A judgement is reused only for the same edited pixels (the manifest's digest): an image edited again after
    a restart of the edit stage is judged again.
    """
    if restart_requested and state.is_main:
        removed = restart(config.output_dir, "score")
        log.info("--restart: removed %s", ", ".join(removed) or "nothing (the folder had no judgements)")
    barrier()  # nobody reads the journals while rank 0 removes them
    recorded = read_journals(journal_paths(config.output_dir, "score"))
    for line in recorded.skipped:
        log.warning("ignoring %s: that sample is judged again", line)
    pixels = {e["id"]: e["sha256"] for e in entries if e["status"] == "ok"}
    judged: dict[str, dict] = {}
    for result in recorded.records:
        if pixels.get(result.get("id")) == result.get("image_sha256"):
            judged.setdefault(result["id"], result)
    return judged


def ensure_tiny_judge(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight judge if it is missing; the others wait."""
    cfg = config.score
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "config.json")):
        from score_stage.tiny import build_tiny_judge

        build_tiny_judge(cfg.model, moe=True)
    barrier()


def judge_share(config: RunConfig, state: DistState, entries: list[dict], log) -> list[dict[str, Any]]:
    """Judge this rank's samples in batches, recording each batch in the rank's journal; one line per sample."""
    from score_stage.judge import batches_with_backoff, conversation, generate_answers, load_judge
    from score_stage.parsing import extract_score

    model, processor = load_judge(config.score, state.device)

    def ask(batch: list[dict]) -> list[str]:
        chats = [conversation(config.score.prompts[e["category"]], e, _edited(config, e)) for e in batch]
        return generate_answers(model, processor, chats, config.score.max_new_tokens)

    def on_retry(failed: int, size: int) -> None:
        log.warning("out of GPU memory judging %d samples at once; retrying with batch size %d", failed, size,
                    extra=EVERY_RANK)

    results = []
    path = journal_path(config.output_dir, "score", state.rank, state.world_size)
    with JournalWriter(path) as journal, progress(state, "score", "judged", len(entries)) as bar:
        start = time.perf_counter()
        for batch, answers in batches_with_backoff(entries, config.score.batch_size, ask, on_retry):
            seconds = (time.perf_counter() - start) / len(batch)
            judged = [_result(entry, answer, extract_score(answer), state, seconds)
                      for entry, answer in zip(batch, answers)]
            journal.append(judged)
            for result in judged:
                log.info("%s/%s score=%s | %s", result["category"], result["id"],
                         "unparsed" if result["score"] is None else f"{result['score']:g}",
                         " ".join(result["response"].split())[:80], extra=EVERY_RANK)
            results.extend(judged)
            bar.update(len(batch))
            start = time.perf_counter()
    return results


def _result(entry: dict, answer: str, score: float | None, state: DistState, seconds: float) -> dict[str, Any]:
    return {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
            "image_sha256": entry["sha256"], "score": score, "status": "ok" if score is not None else "unparsed",
            "response": answer, "rank": state.rank, "world_size": state.world_size,
            "judge_seconds": round(seconds, 3)}


def _edited(config: RunConfig, entry: dict[str, Any]) -> Image.Image:
    return Image.fromarray(read_image(config.output_dir, entry).numpy(), mode="RGB")


def _failed(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"], "score": None,
            "status": "failed", "response": None, "reason": entry["reason"]}


def write_outputs(config: RunConfig, manifest: dict, entries: list[dict], judged: dict[str, dict],
                  attempts: list[dict], state: DistState, log) -> None:
    """Rank 0: the report in manifest order (failed samples included), its files, and the summary lines."""
    from score_stage.report import build_report, markdown_table, write_report

    results = [judged[e["id"]] if e["status"] == "ok" else _failed(e) for e in entries]
    report = build_report(
        results, list(config.score.prompts),
        edit_model=manifest["model"]["path"], judge_model=config.score.model,
        world_size={"edit": manifest["world_size"], "score": state.world_size},
        attempts={"edit": manifest["attempts"], "score": attempts},
        versions={"edit": manifest["versions"], "score": package_versions()},
        elapsed_s={"edit": manifest["elapsed_s"],
                   "score": round(sum(a.get("elapsed_s", 0.0) for a in attempts), 3)},
        config=to_dict(config),
    )
    paths = write_report(config.output_dir, report)
    o = report["overall"]
    log.info("judged %d samples: mean %s, min %s, max %s, unparsed %d, failed %d", o["count"],
             *(("–" if o[k] is None else f"{o[k]:.3f}") for k in ("mean", "min", "max")), o["unparsed"],
             o["failed"])
    log.info("per category:\n%s", markdown_table(report))
    log.info("report: %s", paths["json"])


@record
def main(argv: list[str] | None = None) -> None:
    """Load config and manifest, join the job, verify shards, resume, judge the rest, gather, write the report."""
    start = time.perf_counter()
    args = stage_argument_parser("score_stage", __doc__.splitlines()[0]).parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        manifest = read_manifest(config.output_dir)
        entries = selected_entries(config, manifest)
        identity = run_identity(config, "score")
        if not args.restart:
            check_identity(config.output_dir, "score", identity)
    state = init_distributed(config.distributed.timeout_s)
    try:
        log = setup_logging("score", state, config.output_dir)
        judged_before = resume_point(config, state, entries, args.restart, log)
        with exit_on_input_error():
            verify_shards_before_judging(config, manifest, entries, state)
        todo = [e for e in entries if e["status"] == "ok" and e["id"] not in judged_before]
        mine = split_for_rank(todo, state.rank, state.world_size)
        failed = sum(e["status"] == "failed" for e in entries)
        log.info("%d samples selected: %d judged before, %d failed in the edit stage, %d to judge on %d ranks "
                 "(shards verified); this rank judges %d", len(entries), len(judged_before), failed, len(todo),
                 state.world_size, len(mine), extra=EVERY_RANK)
        if state.is_main:
            begin_attempt(config.output_dir, "score", identity, world_size=state.world_size,
                          done_before=len(judged_before), to_do=len(todo))
        if todo:
            ensure_tiny_judge(config, state)
        shares = all_gather_json(judge_share(config, state, mine, log) if mine else [], state)
        if state.is_main:
            attempts = end_attempt(config.output_dir, "score", judged=len(todo),
                                   elapsed_s=round(time.perf_counter() - start, 3))
            judged = {**judged_before, **{r["id"]: r for share in shares for r in share}}
            write_outputs(config, manifest, entries, judged, attempts, state, log)
    finally:
        teardown()


"""Score stage entry point: each rank judges its share of the edited images; rank 0 writes the report.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Reads `<output-dir>/manifest.json` from the edit stage, verifies every shard it needs before judging anything,
and writes `report.json`, `results.csv`, `report.md` and `report.html` into the same folder. Each judged sample is appended to the
rank's journal as soon as its batch is done: run the same command again (with any number of ranks) to resume,
judging only what is missing. `--restart` discards the folder's judgements instead.
"""

from __future__ import annotations

import os
import time
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from score_stage.follow import follow_edits
from score_stage.worker import Judging, chunked, edited_image, original_problem, recorded_judgements
from shards.config import RunConfig, load_config, overrides_from_args, prompt_fields, stage_argument_parser, to_dict
from shards.dataset import DatasetError, open_image, select_samples
from shards.folder.identity import check_resumable, run_identity
from shards.folder.liveness import rank_dies_with_torchrun
from shards.folder.lock import release, take_for_stage
from shards.folder.records import begin_attempt, check_restartable, end_attempt, restart
from shards.manifest import read_manifest
from shards.report.schema import REPORT_NAMES
from shards.runtime.dist import DistState, all_gather_json, barrier, finish, init_distributed, map_in_parallel, teardown
from shards.runtime.logs import EVERY_RANK, exit_on_input_error, setup_logging
from shards.runtime.nodes import check_nodes_agree
from shards.runtime.provenance import hub_revision, installed_packages, judging_record, package_versions, tool_version
from shards.store import ShardError, shard_problem


def selected_entries(config: RunConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest samples this run reports on; each must have judge prompts. Checked before any model loads."""
    entries = select_samples(manifest["samples"], config.dataset.categories, config.dataset.limit,
                             category_of=lambda entry: entry["category"], where=config.dataset.where,
                             extra_of=lambda entry: entry.get("extra", {}))
    key, fields = config.score.human_score_key, prompt_fields(config)
    for entry in entries:
        if entry["category"] not in config.score.prompts:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has category '{entry['category']}', "
                               f"which has no judge prompts in {config.source} (score.prompts)")
        missing = [f for f in fields[entry["category"]] if entry.get("extra", {}).get(f) is None]
        if missing:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has no field '{missing[0]}', which the "
                               f"judge prompts of category '{entry['category']}' use ({{extra[{missing[0]}]}})")
        human = entry.get("extra", {}).get(key)
        if human is not None and (isinstance(human, bool) or not isinstance(human, (int, float))):
            raise DatasetError(f"sample '{entry['id']}': '{key}' (score.human_score_key) must be a number, "
                               f"got {human!r:.40}")
    return entries


def verify_inputs_before_judging(config: RunConfig, manifest: dict, entries: list[dict], todo: list[dict],
                                 state: DistState) -> None:
    """Every shard the report rests on, and every original image the judge is about to see, is checked against
    the manifest's sha256 (each rank a share); any rank's finding stops every rank before anything is judged.

    Raises:
        ShardError: naming each shard or original image that is missing or changed.
    """
    needed = {e["shard"] for e in entries if e["status"] == "ok"}
    shards = [s for s in manifest["shards"] if s["path"] in needed]
    originals = [e for e in todo if _sees_original(config, e)]
    checks = [("shard", s) for s in shards] + [("original", e) for e in originals]
    problems = [p for p in map_in_parallel(checks, lambda c: _input_problem(config, manifest, *c), state) if p]
    if problems:
        raise ShardError("; ".join(problems) + f" (as recorded in {config.output_dir}/manifest.json); "
                                               "nothing was judged")


def _sees_original(config: RunConfig, entry: dict) -> bool:
    dimensions = config.score.prompts[entry["category"]].dimensions.values()
    return any(d.images == "original_and_edited" for d in dimensions)


def _original_path(manifest: dict, entry: dict) -> str:
    return os.path.join(manifest["dataset"]["root"], entry["image"])


def _input_problem(config: RunConfig, manifest: dict, kind: str, item: dict) -> str | None:
    if kind == "shard":
        return shard_problem(config.output_dir, item)
    return original_problem(manifest["dataset"]["root"], item)


def ensure_tiny_judge(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight judge if it is missing; the others wait."""
    cfg = config.score
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "config.json")):
        from score_stage.tiny import build_tiny_judge

        build_tiny_judge(cfg.model, moe=True)
    barrier()


def make_thumbnails(config: RunConfig, manifest: dict, entries: list[dict], state: DistState) -> dict[str, dict]:
    """Sample id -> {"original", "edited"} JPEG data URIs for report.html, each rank making a share.

    An image that cannot be read (the original of a sample that failed in the edit stage) has None.
    """
    from score_stage.report_page import thumbnail

    def pair(entry: dict) -> dict[str, str | None]:
        try:
            original_uri = thumbnail(open_image(_original_path(manifest, entry)))
        except (OSError, SyntaxError, ValueError):
            original_uri = None
        edited_uri = thumbnail(edited_image(config, entry)) if entry["status"] == "ok" else None
        return {"original": original_uri, "edited": edited_uri}

    return dict(zip((e["id"] for e in entries), map_in_parallel(entries, pair, state)))


def write_outputs(config: RunConfig, manifest: dict, entries: list[dict], judged: dict[str, dict],
                  attempts: list[dict], thumbnails: dict[str, dict], state: DistState, log) -> None:
    """Rank 0: the report in manifest order (failed samples included), its files, and the summary lines."""
    from score_stage.report import build_report, markdown_table, write_report
    from score_stage.results import failed_result
    from shards.report.numbers import number

    # Each result names its original image's digest, so that `launch compare` pairs only the same samples.
    results = [{**(judged[e["id"]] if e["status"] == "ok" else failed_result(e)),
                "original_sha256": e.get("image_sha256")} for e in entries]
    key = config.score.human_score_key
    human = {e["id"]: float(e["extra"][key]) for e in entries if e.get("extra", {}).get(key) is not None}
    report = build_report(
        results, list(config.score.prompts), human_scores=human,
        edit_model=manifest["model"].get("label", manifest["model"]["path"]), judge_model=config.score.model,
        scoring_mode=config.score.mode, record=run_record(config, manifest),
        world_size={"edit": manifest["world_size"], "score": state.world_size},
        attempts={"edit": manifest["attempts"], "score": attempts},
        versions={"edit": manifest["versions"], "score": package_versions()},
        elapsed_s={"edit": manifest["elapsed_s"],
                   "score": round(sum(a.get("elapsed_s", 0.0) for a in attempts), 3)},
        config=to_dict(config),
    )
    paths = write_report(config.output_dir, report, thumbnails)
    o = report["overall"]
    log.info("%d samples: mean over samples %s (%d scored), mean over categories %s (%d categories), "
             "unparsed %d, failed %d", o["count"], number(o["mean_over_samples"]), o["scored"],
             number(o["mean_over_categories"]), o["categories_in_mean"], o["unparsed"], o["failed"])
    log.info("per category:\n%s", markdown_table(report))
    log.info("report: %s and %s", paths["json"], paths["html"])


def run_record(config: RunConfig, manifest: dict) -> dict[str, Any]:
    """What makes the scores reproducible: the dataset file's sha256, editor and judge (hub revision, or the local
    files' fingerprint), every prompt's sha256 and the decoding settings, the seeds, the tool's version and both
    environments."""
    judge = config.score.model
    return {"dataset": {k: manifest["dataset"][k] for k in ("path", "sha256")}, "editor": manifest["model"],
            "judge": {"model": judge, "revision": hub_revision(judge),
                      "fingerprint": run_identity(config, "score")["score.model files fingerprint"]},
            "judging": judging_record(config.score),
            "seeds": {"edit": manifest["model"].get("seed"), "per_sample": "sha256(edit seed, sample id)",
                      "judge": "none: greedy decoding"},
            "tool": {"edit": manifest.get("tool"), "score": tool_version()},
            "environments": {"edit": manifest.get("environment"), "score": installed_packages()}}


@record
def main(argv: list[str] | None = None) -> None:
    """Load config and manifest, join the job, verify shards, resume, judge the rest, gather, write the report;
    with --follow-edits, judge the edits as they land and read the manifest once it is complete."""
    rank_dies_with_torchrun()    # before anything is written: no rank outlives its torchrun
    start = time.perf_counter()
    parser = stage_argument_parser("score_stage", __doc__.splitlines()[0])
    parser.add_argument("--follow-edits", action="store_true",
                        help="run beside the edit stage: judge each shard part as soon as it is recorded")
    args = parser.parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        if not args.follow_edits:
            manifest = read_manifest(config.output_dir)
            entries = selected_entries(config, manifest)
        if args.restart:
            check_restartable(config.output_dir, "score")
        notes = [] if args.restart else check_resumable(config, "score")
        state = init_distributed(config.distributed.device, config.distributed.timeout_s)
    run_id = None
    try:
        with exit_on_input_error():
            check_nodes_agree(config, "score", state)   # before any lock, fetch or model
        with exit_on_input_error():
            run_id = take_for_stage(config.output_dir, "score", state.rank,
                                    lambda share: all_gather_json(share, state))
        log = setup_logging("score", state, config.output_dir)
        for note in notes:
            log.warning("%s", note)
        if args.restart and state.is_main:
            log.info("--restart: removed %s", ", ".join(restart(config.output_dir, "score")) or "nothing")
        barrier()  # nobody reads the journals while rank 0 removes them
        ensure_tiny_judge(config, state)
        if not args.follow_edits:
            judged_before = recorded_judgements(config, {e["id"]: e["sha256"] for e in entries
                                                         if e["status"] == "ok"}, log)
            todo = [e for e in entries if e["status"] == "ok" and e["id"] not in judged_before]
        if state.is_main:  # after the tiny judge is built, so that its fingerprint is recorded
            counts = {"follows_edits": True} if args.follow_edits else {"done_before": len(judged_before),
                                                                         "to_do": len(todo)}
            begin_attempt(config.output_dir, "score", run_identity(config, "score"), world_size=state.world_size,
                          **counts)
        barrier()  # the record exists before any rank opens a journal: every file in the folder is accounted for
        with exit_on_input_error():
            if args.follow_edits:
                summary, judged_before = follow_edits(config, state, log)
                manifest = read_manifest(config.output_dir)
                entries = selected_entries(config, manifest)
            else:
                summary = judge_after_edits(config, manifest, entries, todo, len(judged_before), state, log)
        shares = all_gather_json(summary, state)
        thumbnails = make_thumbnails(config, manifest, entries, state)
        if state.is_main:
            ranks = [{k: v for k, v in share.items() if k != "results"} for share in shares]
            judged = {**judged_before, **{r["id"]: r for share in shares for r in share["results"]}}
            attempts = end_attempt(config.output_dir, "score", outputs=REPORT_NAMES, done_before=len(judged_before),
                                   judged=len(judged) - len(judged_before),
                                   elapsed_s=round(time.perf_counter() - start, 3), ranks=ranks)
            with exit_on_input_error():
                check_judged(config, entries, judged)
            write_outputs(config, manifest, entries, judged, attempts, thumbnails, state, log)
        finish()
    finally:
        if run_id:
            release(config.output_dir, run_id)
        teardown()


def judge_after_edits(config: RunConfig, manifest: dict, entries: list[dict], todo: list[dict], before: int,
                      state: DistState, log) -> dict[str, Any]:
    """Verify every input, then judge `todo` in chunks from the shared queue; this rank's summary."""
    verify_inputs_before_judging(config, manifest, entries, todo, state)
    failed = sum(e["status"] == "failed" for e in entries)
    log.info("%d samples selected: %d judged before, %d failed in the edit stage, %d to judge on %d ranks "
             "(shards verified; each takes the next chunk of %d as it finishes one)", len(entries), before,
             failed, len(todo), state.world_size, config.score.batch_size, extra=EVERY_RANK)
    if not todo:
        return {"results": [], "rank": state.rank, "samples": 0, "busy_s": 0.0, "load_s": 0.0}
    judging = Judging(config, manifest["dataset"]["root"], state, len(todo), log)
    judging.judge_chunks(chunked(todo, config.score.batch_size), "score")
    return judging.close()


def check_judged(config: RunConfig, entries: list[dict], judged: dict[str, dict]) -> None:
    """Every edited sample of the manifest has a judgement, of its very pixels."""
    wrong = [e["id"] for e in entries if e["status"] == "ok" and
             (e["id"] not in judged or judged[e["id"]].get("image_sha256") != e["sha256"])]
    if wrong:
        raise ShardError(f"{len(wrong)} edited sample(s) have no judgement of their current pixels "
                         f"({', '.join(wrong[:10])}); run the score stage again to judge them")

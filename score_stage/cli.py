"""Score stage entry point: each rank judges its share of the edited images; rank 0 writes the report.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Reads `<output-dir>/manifest.json` from the edit stage, verifies every shard it needs before judging anything,
and writes `report.json`, `results.csv`, `report.md` and `report.html` into the same folder. Each judged sample
is appended to the rank's journal as soon as its batch is done: run the same command again (with any number of
ranks) to resume, judging only what is missing. `--restart` discards the folder's judgements instead. With
`--follow-edits` it runs beside the edit stage and judges each shard part as soon as it is recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from score_stage.follow import follow_edits
from score_stage.inputs import check_judged, selected_entries, verify_inputs_before_judging
from score_stage.judges.server_answers import ServerError
from score_stage.outputs import make_thumbnails, write_outputs
from score_stage.worker import JudgeWorker, chunked, load_judge, recorded_judgements
from shards.config import ConfigError, RunConfig, stage_argument_parser
from shards.folder.identity import check_identity, check_resumable, run_identity
from shards.folder.liveness import rank_dies_with_torchrun
from shards.folder.lock import release, take_for_stage
from shards.folder.records import begin_attempt, check_restartable, end_attempt, restart
from shards.manifest import read_manifest
from shards.report.schema import REPORT_NAMES
from shards.runtime.dist import DistState, WorkQueue, all_gather_json, barrier, finish, init_distributed, teardown
from shards.runtime.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.runtime.nodes import check_nodes_agree
from shards.sweep import SweepRun, add_checkpoint_argument, run_folders, stage_runs


def ensure_tiny_judge(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight judge if it is missing; the others wait."""
    cfg = config.score
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "config.json")):
        from score_stage.tiny import build_tiny_judge

        build_tiny_judge(cfg.model, moe=True)
    barrier()


@dataclass
class Judged:
    """What this rank's judging leaves for the report."""

    manifest: dict
    entries: list[dict]
    """The manifest's samples this run reports on."""
    before: dict[str, dict]
    """The judgements recorded before this run and reused (rank 0's view)."""
    summary: dict[str, Any]
    """This rank's results, samples judged, busy and load seconds."""


def parse_args(argv: list[str] | None):
    parser = stage_argument_parser("score_stage", __doc__.splitlines()[0])
    parser.add_argument("--follow-edits", action="store_true",
                        help="run beside the edit stage: judge each shard part as soon as it is recorded")
    add_checkpoint_argument(parser)
    return parser.parse_args(argv)


@dataclass
class RunInputs:
    """One run to judge (a single run, or one checkpoint of a sweep): its config, manifest and entries."""

    run: SweepRun
    manifest: dict | None
    entries: list[dict] | None
    notes: list[str]

    @property
    def config(self) -> RunConfig:
        return self.run.config


@record
def main(argv: list[str] | None = None) -> None:
    """Load the config (and the manifests), join the job, take the folders, judge after the edit stage or beside
    it, gather, write each run's report."""
    rank_dies_with_torchrun()    # before anything is written: no rank outlives its torchrun
    start = time.perf_counter()
    args = parse_args(argv)
    with exit_on_input_error():
        config, runs = stage_runs(args)
        if args.follow_edits and config.sweep is not None:
            raise ConfigError("--follow-edits: a sweep is judged after its edit stage, not beside it")
        inputs = [run_inputs(run, args.follow_edits, args.restart) for run in runs]
        state = init_distributed(config.distributed.device, config.distributed.timeout_s)
    folders = run_folders(config, runs)
    run_id = None
    try:
        with exit_on_input_error():
            check_nodes_agree(config, "score", state)   # before any lock, fetch or model
            run_id = take_for_stage(folders, "score", state.rank, lambda share: all_gather_json(share, state))
        log = setup_logging("score", state, config.output_dir)
        for run in inputs:
            start_over_if_asked(run.config, state, args.restart, run.notes, log)
        ensure_tiny_judge(config, state)
        with exit_on_input_error(ServerError):
            if args.follow_edits:
                judged = [judge_following_edits(config, state, log)]
            else:
                judged = judge_after_edits(inputs, state, log)
        for run, result in zip(inputs, judged):
            report(run.config, state, result, start, log)
        finish()
    finally:
        if run_id:
            for folder in folders:
                release(folder, run_id)
        teardown()


def run_inputs(run: SweepRun, follow_edits: bool, restart_requested: bool) -> RunInputs:
    """A run's manifest and selected entries (none yet when following the edits), its folder checked."""
    manifest = None if follow_edits else read_manifest(run.config.output_dir)
    entries = None if follow_edits else selected_entries(run.config, manifest)
    return RunInputs(run, manifest, entries, check_folder(run.config, restart_requested))


def check_folder(config: RunConfig, restart_requested: bool) -> list[str]:
    """Refuse a folder this run cannot resume (or restart); returns notes on what could not be compared."""
    if restart_requested:
        check_restartable(config.output_dir, "score")
        return []
    return check_resumable(config, "score")


def start_over_if_asked(config: RunConfig, state: DistState, restart_requested: bool, notes: list[str], log) -> None:
    for note in notes:
        log.warning("%s", note)
    if restart_requested and state.is_main:
        log.info("--restart: removed %s", ", ".join(restart(config.output_dir, "score")) or "nothing")
    barrier()  # nobody reads the journals while rank 0 removes them


def record_attempt(config: RunConfig, state: DistState, worker: JudgeWorker | None, **counts: Any) -> None:
    """Rank 0 records the run's identity and this attempt (after the tiny judge is built, so that its fingerprint
    is recorded, and after a judge server answered, so that the model it reports is: a resumed run whose server
    now reports another model is refused); every rank waits for it."""
    if state.is_main:
        identity = run_identity(config, "score", worker.reported_model if worker else None,
                                worker.reading if worker else None)
        check_identity(config.output_dir, "score", identity)
        begin_attempt(config.output_dir, "score", identity, world_size=state.world_size, **counts)
    barrier()  # the record exists before any rank opens a journal: every file in the folder is accounted for


def judge_after_edits(inputs: list[RunInputs], state: DistState, log) -> list[Judged]:
    """Reuse each run's recorded judgements of the very pixels, verify every input, then judge the rest in chunks
    from one queue over every run, with one judge (a sweep's runs, one after the other in the queue)."""
    plans = [_plan(run, state, log) for run in inputs]
    todo = sum(len(plan[1]) for plan in plans)
    begin = time.perf_counter()
    judge = load_judge(inputs[0].config, state, log) if todo else None
    load_s = round(time.perf_counter() - begin, 3)
    if judge is not None:
        log.info("loaded the judge in %.1fs", load_s, extra=EVERY_RANK)
    bar = progress(state, "score", "judged", todo) if todo else None
    workers = [JudgeWorker(run.config, run.manifest["dataset"]["root"], state, len(left), log, judge=judge, bar=bar)
               if left else None for run, (_, left) in zip(inputs, plans)]
    for run, (before, left), worker in zip(inputs, plans, workers):
        record_attempt(run.config, state, worker, done_before=len(before), to_do=len(left))
    chunks = [(worker, chunk) for worker, (_, left) in zip(workers, plans) if worker
              for chunk in chunked(left, worker.config.score.batch_size)]
    for position in WorkQueue(len(chunks), state, "score"):
        worker, chunk = chunks[position]
        worker.judge_chunk(chunk)
    judged = []
    for run, (before, _), worker in zip(inputs, plans, workers):
        summary = worker.close() if worker else {"results": [], "rank": state.rank, "samples": 0, "busy_s": 0.0}
        judged.append(Judged(run.manifest, run.entries, before, {**summary, "load_s": load_s}))
    if bar is not None:
        bar.close()
    if judge is not None and hasattr(judge, "close"):
        judge.close()
    return judged


def _plan(run: RunInputs, state: DistState, log) -> tuple[dict[str, dict], list[dict]]:
    """A run's judgements recorded before (still valid) and the samples left to judge, its inputs verified."""
    entries = run.entries
    before = recorded_judgements(run.config, {e["id"]: e["sha256"] for e in entries if e["status"] == "ok"}, log)
    todo = [e for e in entries if e["status"] == "ok" and e["id"] not in before]
    verify_inputs_before_judging(run.config, run.manifest, entries, todo, state)
    failed = sum(e["status"] == "failed" for e in entries)
    named = f"{run.run.name}: " if run.run.name else ""
    log.info("%s%d samples selected: %d judged before, %d failed in the edit stage, %d to judge on %d ranks "
             "(shards verified; each takes the next chunk of %d as it finishes one)", named, len(entries),
             len(before), failed, len(todo), state.world_size, run.config.score.batch_size, extra=EVERY_RANK)
    return before, todo


def judge_following_edits(config: RunConfig, state: DistState, log) -> Judged:
    """Judge the edits as they land, then read the manifest the edit stage completed."""
    worker = JudgeWorker(config, os.path.dirname(config.dataset.path), state, 0, log)
    record_attempt(config, state, worker, follows_edits=True)
    summary, before = follow_edits(config, state, log, worker)
    manifest = read_manifest(config.output_dir)
    return Judged(manifest, selected_entries(config, manifest), before, summary)


def report(config: RunConfig, state: DistState, judged: Judged, start: float, log) -> None:
    """Gather every rank's results; rank 0 checks that every edited sample is judged and writes the report."""
    shares = all_gather_json(judged.summary, state)
    thumbnails = make_thumbnails(config, judged.manifest, judged.entries, state)
    if not state.is_main:
        return
    ranks = [{k: v for k, v in share.items() if k != "results"} for share in shares]
    results = {**judged.before, **{r["id"]: r for share in shares for r in share["results"]}}
    attempts = end_attempt(config.output_dir, "score", outputs=REPORT_NAMES, done_before=len(judged.before),
                           judged=len(results) - len(judged.before),
                           elapsed_s=round(time.perf_counter() - start, 3), ranks=ranks)
    with exit_on_input_error():
        check_judged(config, judged.entries, results)
    write_outputs(config, judged.manifest, judged.entries, results, attempts, thumbnails, state, log)

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

from PIL import Image
from torch.distributed.elastic.multiprocessing.errors import record

from shards.config import RunConfig, load_config, overrides_from_args, stage_argument_parser, to_dict
from shards.dataset import DatasetError, open_image, select_samples
from shards.dist import (DistState, WorkQueue, all_gather_json, barrier, finish, init_distributed, map_in_parallel,
                         teardown)
from shards.journal import JournalWriter, journal_path, journal_paths, read_journals
from shards.logs import EVERY_RANK, exit_on_input_error, progress, setup_logging
from shards.identity import check_resumable, run_identity
from shards.resume import begin_attempt, check_restartable, end_attempt, restart
from shards.record import hub_revision, installed_packages, judging_record, tool_version
from shards.store import (REPORT_NAMES, ShardError, package_versions, read_image, read_manifest, sha256_file,
                          shard_problem)


def selected_entries(config: RunConfig, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest samples this run reports on; each must have judge prompts. Checked before any model loads."""
    entries = select_samples(manifest["samples"], config.dataset.categories, config.dataset.limit,
                             category_of=lambda entry: entry["category"])
    key = config.score.human_score_key
    for entry in entries:
        if entry["category"] not in config.score.prompts:
            raise DatasetError(f"sample '{entry['id']}' of the manifest has category '{entry['category']}', "
                               f"which has no judge prompts in {config.source} (score.prompts)")
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
    path = _original_path(manifest, item)
    if not os.path.isfile(path):
        return f"the original image of sample '{item['id']}' is missing ({path})"
    if sha256_file(path) != item["image_sha256"]:
        return f"the original image of sample '{item['id']}' changed since it was edited ({path})"
    return None


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
        if result.get("id") in pixels and pixels[result["id"]] == result.get("image_sha256"):
            judged.setdefault(result["id"], result)
    return judged


def ensure_tiny_judge(config: RunConfig, state: DistState) -> None:
    """Demo and tests: rank 0 builds the tiny random-weight judge if it is missing; the others wait."""
    cfg = config.score
    if cfg.build_tiny and state.is_main and not os.path.exists(os.path.join(cfg.model, "config.json")):
        from score_stage.tiny import build_tiny_judge

        build_tiny_judge(cfg.model, moe=True)
    barrier()


def judge_share(config: RunConfig, manifest: dict, state: DistState, todo: list[dict], log) -> dict[str, Any]:
    """Judge chunks of `batch_size` samples from the shared queue until none is left: one query per sample and
    dimension, batched within the chunk. A rank that finishes a chunk takes the next one nobody has. The chunks,
    and so the batches, are the same whichever rank takes them and however many ranks run, so the scores are
    too (a batch's padding can move a score in its last digits). A sample is recorded in the rank's journal, and
    its line printed, as soon as all its dimensions are answered.

    Returns:
        This rank's results, samples judged, busy and load seconds.
    """
    from score_stage.judge import Judge, batches_with_backoff
    from score_stage.results import describe, sample_result

    size = config.score.batch_size
    chunks = [todo[i: i + size] for i in range(0, len(todo), size)]
    queue = WorkQueue(len(chunks), state, "score")
    start = time.perf_counter()
    judge, prompts = Judge(config.score, state.device), config.score.prompts
    loaded = time.perf_counter() - start

    def ask(batch: list[tuple[dict, str]]) -> list[dict]:
        asked = [(e, prompts[e["category"]].dimensions[name]) for e, name in batch]
        return judge.ask([(e, dim, _images(config, manifest, e, dim.images)) for e, dim in asked])

    def on_retry(failed: int, smaller: int) -> None:
        log.warning("out of GPU memory judging %d queries at once; retrying with batch size %d", failed, smaller,
                    extra=EVERY_RANK)

    answers: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    results, busy = [], 0.0
    path = journal_path(config.output_dir, "score", state.rank, state.world_size)
    with JournalWriter(path) as journal, progress(state, "score", "judged", len(todo)) as bar:
        for position in queue:
            queries = [(entry, name) for entry in chunks[position] for name in prompts[entry["category"]].dimensions]
            begin = time.perf_counter()
            for batch, batch_answers in batches_with_backoff(queries, size, ask, on_retry):
                share, finished = (time.perf_counter() - begin) / len(batch), []
                for (entry, name), answer in zip(batch, batch_answers):
                    answers.setdefault(entry["id"], {})[name] = answer
                    seconds[entry["id"]] = seconds.get(entry["id"], 0.0) + share
                    category = prompts[entry["category"]]
                    if len(answers[entry["id"]]) == len(category.dimensions):
                        finished.append(sample_result(entry, answers.pop(entry["id"]), category.combine,
                                                      rank=state.rank, world_size=state.world_size,
                                                      seconds=seconds.pop(entry["id"])))
                journal.append(finished)
                for result in finished:
                    log.info("%s", describe(result), extra=EVERY_RANK)
                results.extend(finished)
                bar.update(len(finished))
                busy += time.perf_counter() - begin
                begin = time.perf_counter()
    return {"results": results, "rank": state.rank, "samples": len(results), "busy_s": round(busy, 3),
            "load_s": round(loaded, 3)}


def _edited(config: RunConfig, entry: dict[str, Any]) -> Image.Image:
    return Image.fromarray(read_image(config.output_dir, entry).numpy(), mode="RGB")


def _images(config: RunConfig, manifest: dict, entry: dict[str, Any], shown: str) -> list[Image.Image]:
    """What the judge sees for one query: the edited image, after the original when the dimension asks for it."""
    edited = _edited(config, entry)
    if shown == "edited":
        return [edited]
    return [open_image(_original_path(manifest, entry)), edited]


def make_thumbnails(config: RunConfig, manifest: dict, entries: list[dict], state: DistState) -> dict[str, dict]:
    """Sample id -> {"original", "edited"} JPEG data URIs for report.html, each rank making a share.

    An image that cannot be read (the original of a sample that failed in the edit stage) has None.
    """
    from score_stage.html_report import thumbnail

    def pair(entry: dict) -> dict[str, str | None]:
        try:
            original_uri = thumbnail(open_image(_original_path(manifest, entry)))
        except (OSError, SyntaxError, ValueError):
            original_uri = None
        edited_uri = thumbnail(_edited(config, entry)) if entry["status"] == "ok" else None
        return {"original": original_uri, "edited": edited_uri}

    return dict(zip((e["id"] for e in entries), map_in_parallel(entries, pair, state)))


def write_outputs(config: RunConfig, manifest: dict, entries: list[dict], judged: dict[str, dict],
                  attempts: list[dict], thumbnails: dict[str, dict], state: DistState, log) -> None:
    """Rank 0: the report in manifest order (failed samples included), its files, and the summary lines."""
    from score_stage.report import build_report, format_score, markdown_table, write_report
    from score_stage.results import failed_result

    results = [judged[e["id"]] if e["status"] == "ok" else failed_result(e) for e in entries]
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
             "unparsed %d, failed %d", o["count"], format_score(o["mean_over_samples"]), o["scored"],
             format_score(o["mean_over_categories"]), o["categories_in_mean"], o["unparsed"], o["failed"])
    log.info("per category:\n%s", markdown_table(report))
    log.info("report: %s and %s", paths["json"], paths["html"])


def run_record(config: RunConfig, manifest: dict) -> dict[str, Any]:
    """What makes the scores reproducible: editor and judge (hub revision, or the local files' fingerprint),
    every prompt's sha256 and the decoding settings, the seeds, the tool's version and both environments."""
    judge = config.score.model
    return {"editor": manifest["model"],
            "judge": {"model": judge, "revision": hub_revision(judge),
                      "fingerprint": run_identity(config, "score")["score.model files fingerprint"]},
            "judging": judging_record(config.score),
            "seeds": {"edit": manifest["model"].get("seed"), "per_sample": "sha256(edit seed, sample id)",
                      "judge": "none: greedy decoding"},
            "tool": {"edit": manifest.get("tool"), "score": tool_version()},
            "environments": {"edit": manifest.get("environment"), "score": installed_packages()}}


@record
def main(argv: list[str] | None = None) -> None:
    """Load config and manifest, join the job, verify shards, resume, judge the rest, gather, write the report."""
    start = time.perf_counter()
    args = stage_argument_parser("score_stage", __doc__.splitlines()[0]).parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        manifest = read_manifest(config.output_dir)
        entries = selected_entries(config, manifest)
        if args.restart:
            check_restartable(config.output_dir, "score")
        notes = [] if args.restart else check_resumable(config, "score")
        state = init_distributed(config.distributed.device, config.distributed.timeout_s)
    try:
        log = setup_logging("score", state, config.output_dir)
        for note in notes:
            log.warning("%s", note)
        judged_before = resume_point(config, state, entries, args.restart, log)
        todo = [e for e in entries if e["status"] == "ok" and e["id"] not in judged_before]
        with exit_on_input_error():
            verify_inputs_before_judging(config, manifest, entries, todo, state)
        failed = sum(e["status"] == "failed" for e in entries)
        log.info("%d samples selected: %d judged before, %d failed in the edit stage, %d to judge on %d ranks "
                 "(shards verified; each takes the next sample as it needs one)", len(entries), len(judged_before),
                 failed, len(todo), state.world_size, extra=EVERY_RANK)
        if todo:
            ensure_tiny_judge(config, state)
        if state.is_main:  # after the tiny judge is built, so that its fingerprint is recorded
            begin_attempt(config.output_dir, "score", run_identity(config, "score"),
                          world_size=state.world_size, done_before=len(judged_before), to_do=len(todo))
        barrier()  # the record exists before any rank opens a journal: every file in the folder is accounted for
        idle = {"results": [], "rank": state.rank, "samples": 0, "busy_s": 0.0, "load_s": 0.0}
        shares = all_gather_json(judge_share(config, manifest, state, todo, log) if todo else idle, state)
        thumbnails = make_thumbnails(config, manifest, entries, state)
        if state.is_main:
            ranks = [{k: v for k, v in share.items() if k != "results"} for share in shares]
            attempts = end_attempt(config.output_dir, "score", outputs=REPORT_NAMES, judged=len(todo),
                                   elapsed_s=round(time.perf_counter() - start, 3), ranks=ranks)
            judged = {**judged_before, **{r["id"]: r for share in shares for r in share["results"]}}
            write_outputs(config, manifest, entries, judged, attempts, thumbnails, state, log)
        finish()
    finally:
        teardown()


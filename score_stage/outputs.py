"""What the score stage writes at the end (rank 0): the report with every sample in manifest order, its
thumbnails (each rank making a share), and the record that makes the scores reproducible."""

from __future__ import annotations

from typing import Any

from score_stage.inputs import original_path
from score_stage.worker import edited_image
from shards.config import RunConfig, judged_categories, to_dict
from shards.folder.identity import run_identity
from shards.folder.records import REPORTED_SUFFIX, read_record
from shards.images import open_image
from shards.runtime.dist import DistState, map_in_parallel
from shards.runtime.provenance import hub_revision, installed_packages, judging_record, package_versions, tool_version


def make_thumbnails(config: RunConfig, manifest: dict, entries: list[dict], state: DistState) -> dict[str, dict]:
    """Sample id -> {"original", "edited"} JPEG data URIs for report.html, each rank making a share.

    An image that cannot be read (the original of a sample that failed in the edit stage) has None.
    """
    from score_stage.report_page import thumbnail

    def pair(entry: dict) -> dict[str, str | None]:
        try:
            original_uri = thumbnail(open_image(original_path(manifest, entry)))
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
        results, judged_categories(config.score), human_scores=human,
        edit_model=manifest["model"].get("label", manifest["model"]["path"]), judge_model=config.score.model,
        scoring_mode=config.score.mode, record=run_record(config, manifest),
        world_size={"edit": manifest["world_size"], "score": state.world_size},
        attempts={"edit": manifest["attempts"], "score": attempts},
        versions={"edit": manifest["versions"], "score": package_versions()},
        elapsed_s={"edit": manifest["elapsed_s"],
                   "score": round(sum(a.get("elapsed_s", 0.0) for a in attempts), 3)},
        config=to_dict(config),
    )
    if config.score.protocol == "official":
        report["official"] = official(config, results, entries, report["record"]["judge"].get("served_model"))
    paths = write_report(config.output_dir, report, thumbnails)
    o = report["overall"]
    log.info("%d samples: mean over samples %s (%d scored), mean over categories %s (%d categories), "
             "unparsed %d, failed %d", o["count"], number(o["mean_over_samples"]), o["scored"],
             number(o["mean_over_categories"]), o["categories_in_mean"], o["unparsed"], o["failed"])
    log.info("per category:\n%s", markdown_table(report))
    log.info("report: %s and %s", paths["json"], paths["html"])


def official(config: RunConfig, results: list[dict], entries: list[dict], served: str | None) -> dict[str, Any]:
    """The benchmark's own tables (`score.protocol: official`)."""
    from score_stage.leaderboards.section import official_section

    return official_section(config, official_prompts(config), results, entries, served)


def official_prompts(config: RunConfig):
    from shards.judge_prompts import judge_prompts_path, read_judge_prompts

    return read_judge_prompts(judge_prompts_path(config.dataset.path))


def run_record(config: RunConfig, manifest: dict) -> dict[str, Any]:
    """What makes the scores reproducible: the dataset file's sha256, editor and judge (hub revision, or the local
    files' fingerprint), every prompt's sha256 and the decoding settings, the seeds, the tool's version and both
    environments."""
    judge, identity = config.score.model, read_record(config.output_dir, "score")["identity"]
    served = {"server_host": identity.get("score.server host"),
              "served_model": identity.get(f"score.model{REPORTED_SUFFIX}")} if config.score.backend == "server" else {}
    return {"dataset": {k: manifest["dataset"][k] for k in ("path", "sha256")}, "editor": manifest["model"],
            "judge": {"model": judge, "revision": hub_revision(judge), "backend": config.score.backend, **served,
                      "fingerprint": run_identity(config, "score")["score.model files fingerprint"]},
            "judging": judging_record(config.score, official_prompts(config) if config.score.protocol == "official"
                                      else None),
            "seeds": {"edit": manifest["model"].get("seed"), "per_sample": "sha256(edit seed, sample id)",
                      "judge": "none: greedy decoding"},
            "tool": {"edit": manifest.get("tool"), "score": tool_version()},
            "environments": {"edit": manifest.get("environment"), "score": installed_packages()}}

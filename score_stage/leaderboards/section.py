"""The report's `official` section (`shards.report.official.OfficialSection`) and its Markdown: the benchmark's
tables over the run's results, the judge that produced them, and the warnings a reader needs before putting a
figure beside a published one."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from score_stage.leaderboards import official_tables
from shards.report.numbers import MISSING
from shards.report.page import markdown_cell

DATED = re.compile(r"\d{4}-?\d{2}-?\d{2}")        # gpt-4.1-2025-04-14, claude-...-20250514
LOCAL = ("127.0.0.1", "localhost", "::1")


def hosted_unpinned(config: Any, served_model: str | None) -> str | None:
    """A warning when the judge is a hosted API's model named by an alias its provider updates."""
    server = config.score.server
    if config.score.backend != "server" or server.start is not None:
        return None
    host = urllib.parse.urlsplit(server.url).hostname or ""
    # The model asked decides, not the one that answered: an API answers an alias with the snapshot it points to
    # today, and another run asking the same alias may get another.
    if host in LOCAL or DATED.search(config.score.model):
        return None
    today = f" (it answered as '{served_model}' this time)" if served_model and served_model != config.score.model \
        else ""
    return (f"the hosted judge '{config.score.model}' (at {host}) is not pinned to a dated snapshot{today}: its "
            "provider updates it, and figures drift between months (GEdit-Bench's authors saw GPT-4.1's move, "
            "Step1X-Edit #74); name a snapshot, e.g. gpt-4.1-2025-04-14")


# What a sample's score is under each benchmark's official protocol: the tool's own figures are means of it.
SAMPLE_SCORES = {"gedit": "O = sqrt(SC * PQ), 0-10", "risebench": "its weighted score, 1-5",
                 "kris": "the mean of its dimensions, 1-5", "imgedit": "the mean of its three scores, 1-5"}


def protocol_line(report: dict[str, Any]) -> str:
    """Which protocol produced the report's figures, and on what scale a sample's score is."""
    if "official" not in report:
        return "open: this tool's prompts, each sample's score 0-10"
    benchmark = report["official"]["benchmark"]
    return f"official: {benchmark}'s own prompts, each sample's score {SAMPLE_SCORES[benchmark]}"


def official_section(config: Any, prompts: Any, results: list[dict], entries: list[dict],
                     served_model: str | None) -> dict[str, Any]:
    """The section for the report, from every sample's result and the manifest's entries (their `extra`)."""
    extras = {e["id"]: e.get("extra") or {} for e in entries}
    warnings = [w for w in (hosted_unpinned(config, served_model),) if w]
    return {"benchmark": prompts.benchmark, "judge": served_model or config.score.model,
            "prompts_sha256": prompts.sha256, "tables": official_tables(prompts.benchmark, results, extras),
            "warnings": warnings}


def markdown(section: dict[str, Any]) -> list[str]:
    """The section as Markdown lines: each table with `value (n)` cells, its left-out samples and notes."""
    lines = [f"## Official protocol: {section['benchmark']}", "",
             f"Judge `{section['judge']}`, the benchmark's own prompts (sha256 {section['prompts_sha256'][:12]}). "
             "Each figure in the benchmark's scale and rounding, with the number of values it rests on in brackets; "
             "samples without a score are in no figure.", ""]
    lines += [f"**Warning:** {w}" for w in section["warnings"]] + ([""] if section["warnings"] else [])
    for t in section["tables"]:
        lines += [f"### {markdown_cell(t['title'])}", "", "| | " + " | ".join(map(markdown_cell, t["columns"])) + " |",
                  "|---|" + "---:|" * len(t["columns"])]
        lines += [f"| {markdown_cell(r['label'])} | " + " | ".join(cell_text(c) for c in r["cells"]) + " |"
                  for r in t["rows"]]
        lines += ["", f"Left out (no score): {t['left_out']} sample(s)." + "".join(f" {n}." for n in t["notes"]), ""]
    return lines


def cell_text(cell: dict[str, Any]) -> str:
    return MISSING if cell["value"] is None else f"{cell['value']} ({cell['n']})"

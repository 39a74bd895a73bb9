"""Judging that follows the edits: the score stage running beside the edit stage, on GPUs of its own.

An 80 GB GPU holds the editor or the judge, not both; with the node's GPUs split between the stages (the
launcher's `--judge-gpus K`), the judge takes each chunk of samples as soon as the edit stage has closed and
recorded the shard parts that hold them (read from its journals, each part's checksum verified), and the final
report is written once the edit stage's manifest is complete. The chunks are the ones a judge run after the edit
stage would judge (the selected samples in dataset order, less those whose original cannot be read and those
judged before), so the report is the same.

Rounds keep the ranks in step: rank 0 looks at the folder, says which chunks became ready and whether the edit
stage is done, and every rank then takes chunks of that round from the shared queue.
"""

from __future__ import annotations

import os
import time
from typing import Any

from score_stage.worker import JudgeWorker, chunked, original_problem, recorded_judgements
from shards.config import RunConfig
from shards.dataset import checked_run_samples
from shards.manifest import MANIFEST_NAME, read_manifest
from shards.runtime.dist import DistState, all_gather_json
from shards.store import ShardError, read_parts, shard_problem

POLL_S = 2.0


def expected_samples(config: RunConfig) -> list[str]:
    """The ids the edit stage will record as edited, in dataset order: the selected samples whose original image
    can be read (the others it records as failed)."""
    found, images = checked_run_samples(config)
    return [s.id for s in found.selected if s.id not in images.failed]


class Folder:
    """Rank 0's view of the edit stage's progress: the verified parts' entries, and whether its manifest is
    complete."""

    def __init__(self, config: RunConfig, expected: list[str]):
        self.config, self.expected, self.entries, self._checked = config, expected, {}, set()

    def look(self) -> bool:
        """Read the parts recorded since the last look; True once the manifest lists every expected sample."""
        for part in read_parts(self.config.output_dir).records:
            if part["path"] in self._checked:
                continue
            problem = shard_problem(self.config.output_dir, part)
            if problem:
                raise ShardError(f"{problem}; nothing of it was judged")
            self._checked.add(part["path"])
            for entry in part["samples"]:
                self.entries.setdefault(entry["id"], {**entry, "status": "ok"})
        path = os.path.join(self.config.output_dir, MANIFEST_NAME)
        if not os.path.isfile(path):
            return False
        listed = {s["id"]: s for s in read_manifest(self.config.output_dir)["samples"]}
        return all(i in listed and listed[i]["status"] == "ok" and i in self.entries for i in self.expected)


def follow_edits(config: RunConfig, state: DistState, log, judging: JudgeWorker) -> tuple[dict[str, Any],
                                                                                          dict[str, dict]]:
    """Judge every expected sample as its part lands, until the edit stage's manifest is complete, with this rank's
    `judging` worker (its judge loaded, its journal not yet opened).

    Returns:
        (this rank's judging summary, the judgements recorded before this run that were reused)
    """
    expected = expected_samples(config)
    folder = Folder(config, expected) if state.is_main else None
    if folder:
        folder.look()
    before = all_gather_json(recorded_judgements(config, {i: e["sha256"] for i, e in folder.entries.items()}, log)
                             if folder else None, state)[0]
    todo = [i for i in expected if i not in before]
    chunks = chunked(todo, config.score.batch_size)
    log.info("following the edits: %d samples expected, %d judged before, %d to judge in %d chunks as their "
             "shard parts land", len(expected), len(before), len(todo), len(chunks))
    root = os.path.dirname(config.dataset.path)
    judging.total = len(todo)
    dispatched, done, rounds = set(), False, 0
    while not done or len(dispatched) < len(chunks):
        news = {"ready": [], "done": False, "entries": {}}
        if folder:
            if rounds:
                time.sleep(POLL_S)
            news["done"] = folder.look()
            for index, chunk in enumerate(chunks):
                if index not in dispatched and all(i in folder.entries for i in chunk):
                    problems = [p for i in chunk if (p := original_problem(root, folder.entries[i]))]
                    if problems:
                        raise ShardError("; ".join(problems))
                    news["ready"].append(index)
                    news["entries"].update({i: folder.entries[i] for i in chunk})
        news = all_gather_json(news, state)[0]
        done, rounds = news["done"], rounds + 1
        dispatched.update(news["ready"])
        judging.judge_chunks([[news["entries"][i] for i in chunks[index]] for index in news["ready"]],
                             f"score-follow-{rounds}")
    return judging.close(), before

"""One rank's judging: the judge, its journal, and chunks of samples taken from the shared queue.

Samples are judged in fixed chunks of `batch_size` samples, one query per sample and dimension, batched within
the chunk. The chunks, and so the batches, are the same whichever rank takes them, however many ranks run, and
whether the judge follows the edits or runs after them, so the scores are too (a batch's padding can move a
score in its last digits). A sample is recorded in the rank's journal, and its line printed, as soon as all its
dimensions are answered.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from PIL import Image

from shards.config import RunConfig
from shards.dataset import open_image
from shards.files import sha256_file
from shards.journal import JournalWriter, journal_path, journal_paths, read_journals
from shards.report.schema import SampleResult
from shards.runtime.dist import DistState, WorkQueue
from shards.runtime.hub import fetch_once
from shards.runtime.logs import EVERY_RANK, progress
from shards.store import read_image
from shards.typed_data import SchemaError, from_json


def chunked(todo: list[dict], size: int) -> list[list[dict]]:
    """The samples to judge in chunks of `size`, in their order."""
    return [todo[i: i + size] for i in range(0, len(todo), size)]


def edited_image(config: RunConfig, entry: dict[str, Any]) -> Image.Image:
    return Image.fromarray(read_image(config.output_dir, entry).numpy(), mode="RGB")


def shown_images(config: RunConfig, root: str, entry: dict[str, Any], shown: str) -> list[Image.Image]:
    """What the judge sees for one query: the edited image, after the original when the dimension asks for it;
    each no longer on its longer side than `score.image_max_side`, whichever judge looks."""
    images = [edited_image(config, entry)] if shown == "edited" else \
        [open_image(os.path.join(root, entry["image"])), edited_image(config, entry)]
    return [within(image, config.score.image_max_side) for image in images]


def within(image: Image.Image, max_side: int | None) -> Image.Image:
    """`image` shrunk (Lanczos, aspect ratio kept) so that its longer side is at most `max_side` pixels."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def official_pictures(config: RunConfig, root: str, entry: dict[str, Any],
                      images: tuple[tuple[str, str | None], ...]) -> list[tuple[str | None, Image.Image]]:
    """The official protocol's pictures for one question, labelled: the original, the edit, or the sample's
    reference image (a file of the dataset), each within `score.image_max_side`."""
    def picture(kind: str) -> Image.Image:
        if kind == "edited":
            return edited_image(config, entry)
        return open_image(os.path.join(root, entry["image"] if kind == "original" else entry["extra"]["reference_image"]))

    return [(label, within(picture(kind), config.score.image_max_side)) for kind, label in images]


def load_protocol(config: RunConfig):
    """The official protocol with the benchmark's prompts imported beside the dataset; None for the open one."""
    if config.score.protocol != "official":
        return None
    from score_stage.protocols import OfficialProtocol
    from shards.judge_prompts import judge_prompts_path, read_judge_prompts

    return OfficialProtocol(read_judge_prompts(judge_prompts_path(config.dataset.path)))


def original_problem(root: str, entry: dict) -> str | None:
    """What is wrong with a sample's original image (under the dataset folder `root`) since it was edited: missing
    or changed; None if it is the image the edit stage saw."""
    path = os.path.join(root, entry["image"])
    if not os.path.isfile(path):
        return f"the original image of sample '{entry['id']}' is missing ({path})"
    if sha256_file(path) != entry["image_sha256"]:
        return f"the original image of sample '{entry['id']}' changed since it was edited ({path})"
    return None


def recorded_judgements(config: RunConfig, pixels: dict[str, str], log) -> dict[str, dict]:
    """The judgements recorded in the journals that are still valid: of the very pixels (`pixels`: sample id ->
    the sha256 of its edited image) the shards hold now, each a `SampleResult`. An image edited again after a
    restart of the edit stage is judged again, and so is the sample of a journal's torn last line."""
    recorded = read_journals(journal_paths(config.output_dir, "score"))
    for line in recorded.skipped:
        log.warning("ignoring %s: that sample is judged again", line)
    judged: dict[str, dict] = {}
    for result in recorded.records:
        if result.get("id") in pixels and pixels[result["id"]] == result.get("image_sha256"):
            try:         # a line another version wrote would stop the report being written, after all the judging
                from_json(SampleResult, result, f"the score journals' judgement of sample '{result['id']}'")
            except SchemaError as e:
                log.warning("ignoring %s: that sample is judged again", e)
                continue
            judged.setdefault(result["id"], result)
    return judged


def load_judge(config: RunConfig, state: DistState, log):
    """This rank's judge: the checkpoint loaded on its device (fetched once per cache), or a client of the judge
    server, which the server has answered (`score_stage.judges.served.probe`)."""
    if config.score.backend == "server":
        from score_stage.judges.served import ServedJudge

        return ServedJudge(config.score)
    from score_stage.judges.in_process import InProcessJudge

    model = fetch_once(config.score.model, state, config.distributed.shared_hub_cache, log, "judge")
    return InProcessJudge(dataclasses.replace(config.score, model=model), state.device)


class JudgeWorker:
    """This rank's judge, loaded once, and its journal (opened once the run's record says it is this run's)."""

    def __init__(self, config: RunConfig, root: str, state: DistState, total: int, log, judge=None, bar=None):
        """`judge` and `bar`: a judge already loaded and a progress bar shared with other runs' workers (a sweep's
        runs share one of each); by default the worker loads its own and opens its own."""
        self.config, self.root, self.state, self.log = config, root, state, log
        start = time.perf_counter()
        self.owns_judge = judge is None
        self.judge = load_judge(config, state, log) if judge is None else judge
        self.protocol, self.questions = load_protocol(config), {}
        self.load_s, self.busy_s, self.results = time.perf_counter() - start, 0.0, []
        self.journal, self.total, self.bar = None, total, bar

    @property
    def reported_model(self) -> str | None:
        """The model a judge server says it serves (a hosted API's dated snapshot); None in process."""
        return getattr(self.judge, "reported_model", None)

    @property
    def reading(self) -> str | None:
        """How a judge server's `expected`-mode scores are read, as its probe settled it; None in process."""
        from score_stage.judges.server_answers import reading

        return reading(self.judge.recipe) if self.config.score.backend == "server" else None

    def judge_chunks(self, chunks: list[list[dict]], name: str) -> None:
        """Judge the chunks this rank takes from a queue shared by every rank (all ranks must call this together,
        with the same chunks)."""
        for position in WorkQueue(len(chunks), self.state, name):
            self.judge_chunk(chunks[position])

    def judge_chunk(self, chunk: list[dict]) -> None:
        """Judge one chunk of samples and record each in this rank's journal as soon as it is judged."""
        from score_stage.judges.in_process import batches_with_backoff

        if self.journal is None:
            self.journal = JournalWriter(journal_path(self.config.output_dir, "score", self.state.rank,
                                                      self.state.world_size))
            self.shared_bar = self.bar is not None
            self.bar = self.bar or progress(self.state, "score", "judged", self.total)
        from score_stage.results import describe

        size = self.config.score.batch_size
        queries = [(entry, name) for entry in chunk for name in self._asked(entry)]
        if self.config.score.backend == "server":
            size = len(queries)           # the whole chunk in flight (max_concurrency at once); no GPU to run out of
        answers: dict[str, dict[str, dict]] = {}
        seconds: dict[str, float] = {}
        begin = time.perf_counter()
        for batch, batch_answers in batches_with_backoff(queries, size, self._ask, self._on_retry):
            share, finished = (time.perf_counter() - begin) / len(batch), []
            for (entry, name), answer in zip(batch, batch_answers):
                answers.setdefault(entry["id"], {})[name] = answer
                seconds[entry["id"]] = seconds.get(entry["id"], 0.0) + share
                if len(answers[entry["id"]]) == len(self._asked(entry)):
                    finished.append(self._result(entry, answers.pop(entry["id"]), seconds.pop(entry["id"])))
            self.journal.append(finished)
            for result in finished:
                self.log.info("%s", describe(result), extra=EVERY_RANK)
            self.results.extend(finished)
            self.bar.update(len(finished))
            self.busy_s += time.perf_counter() - begin
            begin = time.perf_counter()

    def _asked(self, entry: dict) -> list[str]:
        """The names of what the judge is asked about a sample: its category's dimensions, or (official protocol)
        the benchmark's questions."""
        if self.protocol is None:
            return list(self.config.score.prompts[entry["category"]].dimensions)
        if entry["id"] not in self.questions:
            self.questions[entry["id"]] = {q.name: q for q in self.protocol.questions(entry)}
        return list(self.questions[entry["id"]])

    def _result(self, entry: dict, answers: dict[str, dict], seconds: float) -> dict:
        from score_stage.results import sample_result

        run = {"rank": self.state.rank, "world_size": self.state.world_size, "judge_seconds": round(seconds, 4)}
        if self.protocol is None:
            return sample_result(entry, answers, self.config.score.prompts[entry["category"]].combine,
                                 rank=run["rank"], world_size=run["world_size"], seconds=seconds)
        questions = self.questions.pop(entry["id"])
        return self.protocol.result(entry, [(questions[name], answers[name]) for name in questions], **run)

    def _ask(self, batch: list[tuple[dict, str]]) -> list[dict]:
        if self.protocol is not None:
            from score_stage.chat import official_chat

            asked = [self.questions[e["id"]][name] for e, name in batch]
            return self.judge.write([official_chat(q.text, official_pictures(self.config, self.root, e, q.images))
                                     for (e, _), q in zip(batch, asked)])
        prompts = self.config.score.prompts
        asked = [(e, prompts[e["category"]].dimensions[name]) for e, name in batch]
        return self.judge.ask([(e, dim, shown_images(self.config, self.root, e, dim.images)) for e, dim in asked])

    def _on_retry(self, failed: int, smaller: int) -> None:
        self.log.warning("out of GPU memory judging %d queries at once; retrying with batch size %d", failed,
                         smaller, extra=EVERY_RANK)

    def close(self) -> dict[str, Any]:
        """Close the journal; this rank's results, samples judged, busy and load seconds."""
        if self.journal is not None:
            self.journal.close()
            if not self.shared_bar:
                self.bar.close()
        if self.owns_judge and hasattr(self.judge, "close"):
            self.judge.close()
        return {"results": self.results, "rank": self.state.rank, "samples": len(self.results),
                "busy_s": round(self.busy_s, 3), "load_s": round(self.load_s, 3)}

"""Append-only JSONL journals: how both stages record progress so that a crash loses only work in flight.

Each rank appends to its own file under `<output>/progress/` (`edit-r00001-of-00002.jsonl` lists the shard parts
it closed, `score-r00001-of-00002.jsonl` the samples it judged) and fsyncs after each record. A process killed
mid-write leaves at most one torn last line: readers ignore it, and the next writer cuts it off before appending,
so it never glues itself to the next record. Standard library only.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

PROGRESS_DIR = "progress"
_NAME = re.compile(r"(?P<stage>[a-z]+)-r(?P<rank>\d{5})-of-(?P<world>\d{5})\.jsonl")


def journal_path(output_dir: str, stage: str, rank: int, world_size: int) -> str:
    """`<output>/progress/<stage>-r00001-of-00002.jsonl`: one file per rank and world size, never shared."""
    return os.path.join(output_dir, PROGRESS_DIR, f"{stage}-r{rank:05d}-of-{world_size:05d}.jsonl")


def journal_paths(output_dir: str, stage: str) -> list[str]:
    """Every journal of `stage` in the output folder, from runs of any world size, in name order."""
    paths = glob.glob(os.path.join(output_dir, PROGRESS_DIR, f"{stage}-r*-of-*.jsonl"))
    return sorted(p for p in paths if _NAME.fullmatch(os.path.basename(p)))


@dataclass
class JournalRead:
    """The records of one or more journals, and what was skipped while reading them."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One line per unusable line: `file:line: torn last line` or `file:line: not a JSON object`."""


def read_journals(paths: list[str]) -> JournalRead:
    """Parse journals in order. A torn last line (no newline, or not JSON) is skipped and reported in `skipped`,
    as is any other line that is not a JSON object, so its work is simply done again."""
    read = JournalRead()
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            torn = lineno == len(lines)  # the text after the last newline: its write never finished
            try:
                record = json.loads(line.decode("utf-8")) if not torn else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict):
                read.records.append(record)
            else:
                read.skipped.append(f"{path}:{lineno}: {'torn last line' if torn else 'not a JSON object'}")
    return read


class JournalWriter:
    """One rank's journal, opened for appending; every `append` is on disk before it returns."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self._file = open(path, "ab")
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        """Drop a last line that a killed writer left without its newline, so the next record starts clean."""
        size = self._file.seek(0, os.SEEK_END)
        if size == 0:
            return
        with open(self.path, "rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            self._file.truncate(data.rfind(b"\n") + 1)
            self._file.seek(0, os.SEEK_END)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write one line per record, then flush and fsync."""
        payload = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        self._file.write(payload)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

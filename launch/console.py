"""What the launcher prints of its stages: one progress line per rank, and every other line once.

The ranks of a stage started by the launcher do not draw progress bars (with many ranks their fragments tear
each other apart); they write progress events, one line each, which torchrun (with `--tee`) prefixes with the
rank, as it does every line a rank writes. This turns that merged stream into what a person reads:
- progress events update one line per rank (samples it has done, the denoising step of the current image,
  seconds per image, and the stage's ETA), redrawn in place when the output is a terminal, or written as plain
  lines every `interval_s` seconds when it is not (CI, a file, a scheduler's log);
- a line that another rank already printed word for word (a library's warning, say) is shown once, and is still
  in every rank's own log (torchrun's `--tee` files);
- every other line (per-sample score lines, the final table, errors) passes through as it comes.
Standard library only.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from shards.events import PROGRESS_MARK

_PREFIX = re.compile(r"^\[[a-z_]*(\d+)\]:")      # torchrun --tee's "[default3]:" before a rank's line
# torchrun tails each rank's log file a line at a time, and a line the rank has half written comes out with its
# prefix but without its end, the rest following later under the prefix again, perhaps after other ranks' lines.
_TORN = re.compile(r"(?=\[default\d+\]:)")


@dataclass
class RankState:
    stage: str = ""
    done: int = 0
    total: int = 0
    step: int = 0
    steps: int = 0
    first_done_at: float | None = None
    last_done_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)

    def seconds_per_item(self) -> float | None:
        if self.done < 1 or self.last_done_at is None:
            return None
        return (self.last_done_at - self.started_at) / self.done


class Console:
    """Feed it the stages' output bytes; it writes what a person should see to `out` (a binary stream)."""

    def __init__(self, out, tty: bool, interval_s: float = 30.0):
        self.out, self.tty, self.interval_s = out, tty, interval_s
        self.ranks: dict[tuple[str, int], RankState] = {}
        self.seen: dict[str, tuple[str, int]] = {}   # a printed line -> the stage and rank that printed it first
        self.suppressed = 0
        self._partial: dict[str, bytes] = {}
        self._torn: dict[tuple[str, str], str] = {}    # a rank's line torchrun has given only the start of
        self._drawn = 0                          # lines of the progress block now on the screen
        self._last_draw = 0.0
        self._last_report = time.monotonic()

    def feed(self, chunk: bytes, stage: str = "") -> None:
        """A chunk of one stage's output (lines may be split across chunks)."""
        # A carriage return ends a line too: a library's progress bar must not glue itself to the next line.
        lines = (self._partial.get(stage, b"") + chunk).replace(b"\r", b"\n").split(b"\n")
        self._partial[stage] = lines.pop()
        for raw in lines:
            self._whole(raw.decode("utf-8", "replace"), stage)
        self._refresh()

    def _whole(self, line: str, stage: str) -> None:
        """Join the pieces of a rank's line that torchrun tore (each piece but the last ends where the next
        prefix begins; the last ends the line)."""
        pieces = [piece for piece in _TORN.split(line) if piece]
        for piece in pieces[:-1]:
            match = _PREFIX.match(piece)
            if match:
                key = (stage, match.group(0))
                self._torn[key] = self._torn.get(key, match.group(0)) + piece[match.end():]
            else:
                self._line(piece, stage)
        if pieces:
            match = _PREFIX.match(pieces[-1])
            key = (stage, match.group(0) if match else "")
            start = self._torn.pop(key, None) if match else None
            self._line(pieces[-1] if start is None else start + pieces[-1][match.end():], stage)

    def close(self, stage: str = "") -> None:
        """A stage ended: its last partial line, its final progress lines, and how many lines were shown once."""
        if self._partial.get(stage):
            self._whole(self._partial.pop(stage).decode("utf-8", "replace"), stage)
        for key in [key for key in self._torn if key[0] == stage]:
            self._line(self._torn.pop(key), stage)
        self._erase()
        mine = {key: s for key, s in self.ranks.items() if key[0] == stage}
        if mine:
            self._write("\n".join(self.progress_lines(mine)) + "\n")
        self.ranks = {key: s for key, s in self.ranks.items() if key[0] != stage}
        if self.suppressed and not self.ranks:
            self._write(f"[launch] {self.suppressed} repeated line(s) from other ranks shown once; every rank's "
                        "own log has them all\n")
            self.suppressed = 0

    def _line(self, line: str, stage: str) -> None:
        match = _PREFIX.match(line)
        rank, text = (int(match.group(1)), line[match.end():]) if match else (None, line)
        if text.startswith(PROGRESS_MARK):
            self._progress(stage, rank, text[len(PROGRESS_MARK):])
            return
        if not text.strip():
            return
        if rank is not None and text in self.seen and self.seen[text] != (stage, rank):
            self.suppressed += 1
            return
        if rank is not None:
            self.seen.setdefault(text, (stage, rank))
        self._erase()
        self._write(text + "\n")

    def _progress(self, stage: str, rank: int | None, payload: str) -> None:
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            return
        state = self.ranks.setdefault((stage, event.get("rank", rank or 0)), RankState())
        state.stage = event.get("stage", state.stage)
        if event.get("what") == "denoise":
            state.step, state.steps = event["n"], event["total"]
        else:
            if event["n"] > state.done:
                state.last_done_at = time.monotonic()
            state.done, state.total = event["n"], event["total"]

    def progress_lines(self, ranks: dict[tuple[str, int], RankState] | None = None) -> list[str]:
        """One line per rank, then each stage's total and ETA from all its ranks' pace."""
        ranks = self.ranks if ranks is None else ranks
        lines = []
        for stage in dict.fromkeys(key[0] for key in sorted(ranks)):
            mine = {rank: s for (name, rank), s in sorted(ranks.items()) if name == stage}
            rate = 0.0
            for rank, s in mine.items():
                pace = s.seconds_per_item()
                rate += 1 / pace if pace else 0.0
                step = f" · step {s.step}/{s.steps}" if s.steps else ""
                lines.append(f"[{s.stage} r{rank}] {s.done} done{step} · "
                             f"{'–' if pace is None else f'{pace:.1f} s/sample'}")
            total = max(s.total for s in mine.values())
            left = total - sum(s.done for s in mine.values())
            eta = "–" if not rate else _duration(left / rate)
            lines.append(f"[{next(iter(mine.values())).stage}] {total - left} of {total} done · ETA {eta}")
        return lines

    def _refresh(self) -> None:
        now = time.monotonic()
        if not self.ranks:
            return
        if self.tty and now - self._last_draw >= 0.2:
            self._erase()
            block = self.progress_lines()
            self._write("\n".join(block) + "\n")
            self._drawn, self._last_draw = len(block), now
        elif not self.tty and now - self._last_report >= self.interval_s:
            self._write("\n".join(self.progress_lines()) + "\n")
            self._last_report = now

    def _erase(self) -> None:
        """Move back over the progress block and clear it, so the next line takes its place."""
        if self._drawn:
            self._write("\x1b[1A\x1b[2K" * self._drawn + "\r")
            self._drawn = 0

    def _write(self, text: str) -> None:
        self.out.write(text.encode("utf-8"))
        self.out.flush()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"

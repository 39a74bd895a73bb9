"""What each rank prints, and where its log goes.

Rank 0 prints its INFO lines to the terminal; every rank writes everything to `<output>/logs/<stage>-rNNNNN.log`.
Lines a watching person needs from every rank (one per judged sample, one per edited image) are logged with
`extra=EVERY_RANK` and reach the terminal from all ranks, flushed at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time

from tqdm import tqdm

from shards.events import CONSOLE_ENV, PROGRESS_MARK
from shards.runtime.dist import DistState

EVERY_RANK = {"every_rank": True}
REPORT_GRACE_S = 5.0


class _RankFilter(logging.Filter):
    def __init__(self, is_main: bool):
        super().__init__()
        self.is_main = is_main

    def filter(self, record: logging.LogRecord) -> bool:
        return self.is_main or record.levelno >= logging.WARNING or getattr(record, "every_rank", False)


class _TqdmHandler(logging.StreamHandler):
    """Writes through tqdm so that log lines do not break the progress bars, and flushes each line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(stage: str, state: DistState, output_dir: str) -> logging.Logger:
    """The stage's logger: terminal lines prefixed with stage and rank, and a per-rank log file."""
    logger = logging.getLogger(stage)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers.clear()
    prefix = f"[{stage} r{state.rank}/{state.world_size}]"
    console = _TqdmHandler()
    console.addFilter(_RankFilter(state.is_main))
    console.setFormatter(logging.Formatter(f"{prefix} %(message)s"))
    logger.addHandler(console)
    folder = os.path.join(output_dir, "logs")
    os.makedirs(folder, exist_ok=True)
    file = logging.FileHandler(os.path.join(folder, f"{stage}-r{state.rank:05d}.log"), encoding="utf-8")
    file.setFormatter(logging.Formatter(f"%(asctime)s {prefix} %(levelname)s %(message)s"))
    logger.addHandler(file)
    return logger


def progress(state: DistState, stage: str, what: str, total: int, slot: int = 0, leave: bool = True):
    """A progress counter of this rank: a tqdm bar labelled with the rank, on its own line per rank (`position`
    from the local rank); or, under the launcher, progress events it draws one line per rank from."""
    if os.environ.get(CONSOLE_ENV) == "events":
        return ProgressEvents(state, stage, what, total)
    return tqdm(total=total, desc=f"[{stage} r{state.rank}] {what}", position=2 * state.local_rank + slot,
                leave=leave, dynamic_ncols=True, file=sys.stderr, mininterval=0.5)


class ProgressEvents:
    """The part of tqdm's interface the stages use, written as one JSON line per change (at most two a second,
    and always the last), which `launch.console` turns into a line per rank."""

    def __init__(self, state: DistState, stage: str, what: str, total: int):
        self.event = {"stage": stage, "rank": state.rank, "what": what, "n": 0, "total": total}
        self._last = 0.0
        self._emit(force=True)

    def update(self, n: int = 1) -> None:
        self.event["n"] += n
        self._emit(force=self.event["n"] >= self.event["total"])

    def reset(self, total: int | None = None) -> None:
        self.event.update(n=0, total=self.event["total"] if total is None else total)
        self._emit(force=True)

    def _emit(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._last >= 0.5:
            print(PROGRESS_MARK + json.dumps(self.event), file=sys.stdout, flush=True)
            self._last = now

    def close(self) -> None:
        self._emit(force=True)

    def __enter__(self) -> "ProgressEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def exit_on_input_error(*more: type[BaseException]):
    """Turn a config, dataset, shard, resume or device error (or one of `more`: a stage's own, such as a judge
    server that cannot judge) into one clear message and exit status 2.

    These errors name the file and key or sample at fault; a traceback would only bury that line. Every rank
    raises the same error from the same data, so every rank exits, and none waits at a collective; rank 0 says it.
    """
    from shards.config import ConfigError
    from shards.dataset import DatasetError
    from shards.folder.records import ResumeError
    from shards.runtime.device import DeviceError
    from shards.runtime.hub import HubError
    from shards.store import ShardError

    try:
        yield
    except (ConfigError, DatasetError, ShardError, ResumeError, DeviceError, HubError, *more) as e:
        if os.environ.get("RANK", "0") != "0":
            # torchrun stops every rank once one exits: leave rank 0 the time to say it first (and stop this
            # one), and say it here only if rank 0 has not, so the message is printed once and never lost.
            time.sleep(REPORT_GRACE_S)
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

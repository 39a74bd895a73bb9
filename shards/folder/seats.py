"""One launcher per node of a multi-node run: each holds a seat, `<output>/progress/nodes/<run id>/seat-<k>.lock`,
locked exclusively for as long as it and the stage jobs it starts live.

The nodes of one run share the output folder's lock through their run id (`shards.folder.lock`), and a multi-node
run's id is the same at every launch (the rendezvous id: a requeued job keeps it). So the folder's lock alone lets
a second launch of a node that still runs in beside it: its torchrun then joins the running job's rendezvous
store, and hangs, holding the folder, or takes the running node's place. A seat counts the nodes: node k's seat
with `--node-rank k`, else the first free one of `nnodes` (c10d numbers the nodes only once they meet).

A seat is an flock on a file that is never removed (removing a locked file lets a newcomer lock a new file of the
same name). The launcher passes its own open file to its stage jobs, so a torchrun that outlives a launcher killed
with SIGKILL still holds the seat: a rerun of that node waits for it, as for the folder's lock, then refuses.
Standard library only: the launcher takes its seat before any environment exists.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from typing import Callable

from shards.folder.liveness import still_runs, this_process
from shards.folder.lock_record import SCHEMA_VERSION, LockRecord, parse_record, record_json, try_flock
from shards.folder.records import ResumeError

SEATS_DIR = os.path.join("progress", "nodes")
GRACE_S = 45.0            # as shards.folder.lock's: torchrun gives its ranks 30 s to stop after SIGTERM

_held: dict[tuple[str, str], int] = {}      # (folder, run id) -> this launcher's open, locked seat


def seat_path(output_dir: str, run_id: str, seat: int) -> str:
    return os.path.join(output_dir, SEATS_DIR, run_id, f"seat-{seat:05d}.lock")


def take_seat(output_dir: str, run_id: str, node_rank: int | None, nnodes: int, *, grace_s: float = GRACE_S,
              say: Callable[[str], None] | None = None) -> int:
    """Hold node `node_rank`'s seat of run `run_id`, or without a node rank the first free one of `nnodes`, for as
    long as this process lives; waits, within `grace_s`, for the stage jobs of a node whose launcher is gone.

    Returns:
        The seat taken.

    Raises:
        ResumeError: naming the launcher that holds it, if every seat asked for is held by a node that runs.
    """
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    seats = [node_rank] if node_rank is not None else list(range(nnodes))
    me = LockRecord(run_id=run_id, schema_version=SCHEMA_VERSION, **this_process())
    until, said = time.monotonic() + grace_s, False
    while True:
        holders = []
        for seat in seats:
            fd, holder = _try_seat(seat_path(output_dir, run_id, seat), me)
            if holder is None:
                _held[(os.path.abspath(output_dir), run_id)] = fd
                return seat
            holders.append((seat, holder))
        gone = [(seat, h) for seat, h in holders if _lives(h) is False]     # a seat that may yet come free
        if not gone or time.monotonic() > until:
            raise ResumeError(_taken(output_dir, run_id, node_rank, nnodes, holders, grace_s))
        if not said:
            said = True
            say(f"{_holders(gone)}: gone, but {'its' if len(gone) == 1 else 'their'} stage jobs still hold the "
                f"seat{'s' * (len(gone) > 1)} of run {run_id}; waiting up to {grace_s:g} s for them to stop")
        time.sleep(0.2)


def _try_seat(path: str, me: LockRecord) -> tuple[int | None, LockRecord | None]:
    """Lock the seat at `path` and write `me` into it: (its open file, None); or, held, (None, its holder)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise ResumeError(f"{path}: cannot create this node's seat file ({e.strerror}); make the output folder "
                          "writable, or choose another --output-dir") from None
    if try_flock(fd, fcntl.LOCK_EX, path):
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record_json(me), indent=2).encode("utf-8"), 0)
        return fd, None
    holder, _ = parse_record(os.pread(fd, 1 << 16, 0))
    os.close(fd)
    # A holder caught between its lock and its record is named as unknown, and counts as running.
    return None, holder or LockRecord(run_id="?", host="?", pid=1, started="?")


def _lives(holder: LockRecord) -> bool | None:
    """Whether the launcher that took a seat runs (None: another host, or no /proc here)."""
    if holder.host != socket.gethostname():
        return None
    return still_runs(holder.pid, holder.pid_start, holder.boot_id, holder.started)


def _holders(holders: list[tuple[int, LockRecord]]) -> str:
    return "; ".join(f"node {seat}'s launcher (pid {h.pid} on {h.host}, started {h.started})" for seat, h in holders)


def _taken(output_dir: str, run_id: str, node_rank: int | None, nnodes: int,
           holders: list[tuple[int, LockRecord]], grace_s: float) -> str:
    which = f"node {node_rank} of run {run_id} already runs" if node_rank is not None else \
        f"all {nnodes} nodes of run {run_id} already run"
    gone = all(_lives(h) is False for _, h in holders)
    why = f"; gone, but {'its' if len(holders) == 1 else 'their'} stage jobs did not stop within {grace_s:g} s" \
        if gone else ""
    return (f"{output_dir}: {which} ({_holders(holders)}{why}): this launch would be a second copy of a node. "
            "Wait for that run to end or stop it; start each node of a run once.")


def seat_for_child(output_dir: str, run_id: str) -> int | None:
    """This launcher's open seat, to pass to a stage job it starts (`pass_fds`): the job then holds the same lock,
    and the seat stays taken until the job ends too. None if this process holds no seat."""
    return _held.get((os.path.abspath(output_dir), run_id))


def leave_seat(output_dir: str, run_id: str) -> None:
    """Give the seat up (the file stays: see the module's docstring)."""
    fd = _held.pop((os.path.abspath(output_dir), run_id), None)
    if fd is not None:
        os.close(fd)

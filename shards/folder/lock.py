"""One writer per output folder: every process that writes into it holds `<output>/run.lock` open and flock-ed
(shared) for as long as it lives, and another run is refused while any of them lives.

Who holds it: the launcher for its whole run; each stage job it starts, from its first instruction (handed over
as the job starts, `for_child`); every rank of a stage (a stage run alone: its rank 0 takes the lock under a new
run id and the other ranks join it); the single-process import of brought edits. The nodes of one multi-node
run, and a judge following the edits, share it through the run id (`EDIT_BENCH_RUN_ID`).

Why the kernel's flock rather than a pid: the kernel drops a process's flock when the process dies, however it
dies, so a lock held is a writer alive; a pid reused after a restart (pid 1, or the reader's own pid) cannot fake
one, and a rank that outlives a launcher killed with SIGKILL still counts as a writer. A newcomer asks with an
exclusive, non-blocking flock, which succeeds only if no process holds the file. The file names the process that
took it (`shards.folder.lock_record.LockRecord`: host, pid, its start time, boot id, command, run id), and /proc/locks
names every process that holds it, so that a refusal says who writes.

- A lock no process holds is stale: it is taken over with a message (`shards.folder.lock_record.replace`: held
  exclusively, unlinked, created afresh with the same exclusive link as a fresh lock, so of several racers
  exactly one wins and the others meet its lock like any live run's).
- A lock still held although the process that took it is gone: the processes of a run whose launcher was killed.
  They die with it (`shards.folder.liveness`), but may take seconds to close their open shard part, so the newcomer
  waits a bounded grace, saying so, then refuses naming them and how to stop them.
- Some network filesystems keep flock local to a node: a lock taken on another host is refused with how to clear
  it, as is a lock file whose content is not a lock record.
- The last process of the run to leave removes the file.

Standard library only: the launcher takes the lock before it builds any environment.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
import uuid
from typing import Any, Callable

from shards.events import RUN_ID_ENV
from shards.folder.liveness import (boot_id, command, dies_with, flock_holders, held_on_this_host, start_ticks,
                                    still_runs, this_process)
from shards.folder.lock_record import (LOCK_NAME, SCHEMA_VERSION, LockRecord, create, is_at, make_folder, open_lock,
                                       parse_record, record_json, remove_if_last, replace, try_flock)
from shards.folder.records import ResumeError

ORPHAN_GRACE_S = 45.0     # torchrun gives its ranks 30 s to stop after SIGTERM, then kills them
RACE_S = 10.0             # how long a lock that keeps changing hands is looked at again before giving up

_held: dict[tuple[str, str], list[int]] = {}   # (folder, run id) -> this process's open, flock-ed lock files


def lock_path(output_dir: str) -> str:
    return os.path.join(output_dir, LOCK_NAME)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def read_lock(output_dir: str) -> dict[str, Any] | None:
    """The record of the process that took the folder's lock, as written; None if there is no lock.

    Raises:
        ResumeError: if the file is not a lock record, saying how to clear it.
    """
    fd = open_lock(lock_path(output_dir))
    if fd is None:
        return None
    with open(fd, "rb") as f:
        holder, problem = parse_record(f.read())
    if problem:
        raise ResumeError(_unreadable(lock_path(output_dir), problem, []))
    return record_json(holder)


def acquire(output_dir: str, run_id: str, *, join_only: bool = False, grace_s: float = ORPHAN_GRACE_S,
            say: Callable[[str], None] | None = None) -> list[str]:
    """Hold the folder's lock for `run_id` for as long as this process lives (or until `release`): take it, join
    it when that run holds it, or take over a lock that no process holds any more.

    Args:
        join_only: A process of a run that holds the lock already (a stage's rank): join, never take it.
        grace_s: How long to wait for the processes of a run whose taker is gone to stop.
        say: Where a line for a watching person goes while waiting (default: stderr).

    Returns:
        Messages to show (a stale lock taken over).

    Raises:
        ResumeError: naming the holder and what to do, if another run may still write into the folder; naming the
            folder, if its lock file cannot be created (a full disk).
    """
    path = lock_path(output_dir)
    make_folder(output_dir)
    me = LockRecord(run_id=run_id, schema_version=SCHEMA_VERSION, **this_process())
    patience = _Patience(grace_s, say or (lambda line: print(line, file=sys.stderr, flush=True)))
    while True:
        found = open_lock(path)
        if found is not None:
            fd, messages = _meet(found, path, me, join_only, patience)
        elif join_only:
            raise ResumeError(_not_joined(path, run_id, "its lock file is gone"))
        else:
            fd = create(path, me)
            messages = None if fd is None else []
        if messages is not None:
            _held.setdefault((os.path.abspath(output_dir), run_id), []).append(fd)
            return messages
        patience.again(path)


def _meet(fd: int, path: str, me: LockRecord, join_only: bool, patience: "_Patience") \
        -> tuple[int | None, list[str] | None]:
    """Decide about the lock file open as `fd`: join it, take it over, look again, or refuse. Returns the open
    lock file to keep and the messages, or (None, None) to look again; `fd` is closed unless it is kept."""
    holder, problem = parse_record(os.read(fd, 1 << 16))     # this very file's content: it is never rewritten
    joined = False
    try:
        if problem is None and holder.run_id == me.run_id and _taker_lives(holder) is not False:
            joined = try_flock(fd, fcntl.LOCK_SH, path) and is_at(fd, path)
            return (fd, []) if joined else (None, None)
        if join_only:
            raise ResumeError(_not_joined(path, me.run_id, _why_not_joined(holder, problem, me.run_id)))
        if problem:
            raise ResumeError(_unreadable(path, problem, flock_holders(fd)))
        if holder.host != me.host:
            raise ResumeError(_elsewhere(path, holder))
        if try_flock(fd, fcntl.LOCK_EX, path):       # no process holds it: stale
            _refuse_an_earlier_versions_live_lock(path, holder)
            gone = f"{path}: {holder.describe()} {_why_gone(holder)}"
            try:
                new = replace(fd, path, me)
            except OSError as e:
                raise ResumeError(f"{gone}, but its lock cannot be removed ({e.strerror}); make "
                                  f"{os.path.dirname(path)} writable, or choose another --output-dir") from None
            return (None, None) if new is None else (new, [f"{gone}; taking its lock over"])
        if holder.run_id == me.run_id and not held_on_this_host(fd):
            # A multi-node run's id is the same at every launch: its other nodes, on other hosts, joined the lock its
            # gone taker left (they cannot tell it is gone). This host's orphans of the taker's run would be listed.
            joined = try_flock(fd, fcntl.LOCK_SH, path) and is_at(fd, path)
            return (fd, [f"{path}: {holder.describe()} {_why_gone(holder)}; its lock is held from another host: "
                         f"joining run {me.run_id} there"]) if joined else (None, None)
        patience.holders_live(path, holder, flock_holders(fd))
        return None, None
    finally:
        if not joined:
            os.close(fd)


def _taker_lives(holder: LockRecord) -> bool | None:
    """Whether the process that took the lock runs (None: cannot tell; another host, or no /proc here)."""
    if holder.host != socket.gethostname():
        return None
    return still_runs(holder.pid, holder.pid_start, holder.boot_id, holder.started)


def _refuse_an_earlier_versions_live_lock(path: str, holder: LockRecord) -> None:
    """An earlier version of this tool wrote its lock without holding it open: no flock says whether it runs."""
    if holder.schema_version < 2 and _taker_lives(holder) is not False:
        raise ResumeError(f"{path} was written by an earlier version of this tool for {holder.describe()}, whose "
                          "process still runs on this host; that version did not hold the file open, so whether "
                          f"the run still writes cannot be told. If it has ended, delete {path} and run again.")


def _why_gone(holder: LockRecord) -> str:
    """Why the process a stale lock names is not its taker any more, for the message."""
    if holder.boot_id and boot_id() and holder.boot_id != boot_id():
        return "is gone: this machine has restarted since"
    if start_ticks(holder.pid) is None:
        return "is gone (no such process)"
    if _taker_lives(holder) is False:
        return f"is gone: pid {holder.pid} now belongs to another process ({command(holder.pid)})"
    return "holds it no more (no process has the lock file open)"


class _Patience:
    """How long a newcomer looks again: at a lock changing hands (RACE_S), and at the processes of a run whose
    taker is gone (the grace, said once to the watching person)."""

    def __init__(self, grace_s: float, say: Callable[[str], None]):
        self.grace_s, self.say = grace_s, say
        self.race_until, self.orphans_until = time.monotonic() + RACE_S, None

    def again(self, path: str) -> None:
        if time.monotonic() > self.race_until:
            raise ResumeError(f"{path}: could not take the lock (it kept changing hands)")
        time.sleep(0.05)

    def holders_live(self, path: str, holder: LockRecord, holders: list[tuple[int, str]]) -> None:
        """Another run's processes hold the lock: refuse at once if its taker runs; look again while another
        process holds it exclusively (taking it over, or leaving it); else wait, within the grace, for the
        processes its gone taker left behind."""
        if _taker_lives(holder) is not False:
            raise ResumeError(_live(path, holder, holders))
        if any(mode == "WRITE" for _, mode in holders):
            return
        now, pids = time.monotonic(), sorted({pid for pid, _ in holders})
        if self.orphans_until is None:
            self.orphans_until = now + self.grace_s
            self.say(f"{path}: {holder.describe()} {_why_gone(holder)}, but {_processes(pids)} still "
                     f"hold{'s' if len(pids) == 1 else ''} its lock; waiting up to {self.grace_s:g} s for "
                     f"{'it' if len(pids) == 1 else 'them'} to stop")
        if now > self.orphans_until:
            raise ResumeError(f"{os.path.dirname(path)} is still being written: {_processes(pids, named=True)} of "
                              f"run {holder.run_id} still hold {path} although the process that took it (pid "
                              f"{holder.pid}) is gone, and did not stop within {self.grace_s:g} s. Stop "
                              f"{'it' if len(pids) == 1 else 'them'}{_kill(pids)} and run again.")
        time.sleep(0.2)
        self.race_until = time.monotonic() + RACE_S


def _processes(pids: list[int], named: bool = False) -> str:
    if not pids:
        return "processes not visible from here"
    listed = ", ".join(f"{pid} ({command(pid)})" if named else str(pid) for pid in pids)
    return f"process{'es' if len(pids) > 1 else ''} {listed}"


def _kill(pids: list[int]) -> str:
    return f" (kill {' '.join(map(str, pids))})" if pids else " (on another host, or in a container of their own)"


def _live(path: str, holder: LockRecord, holders: list[tuple[int, str]]) -> str:
    others = sorted({pid for pid, _ in holders} - {holder.pid})
    return (f"{os.path.dirname(path)} is being written by {holder.describe()}; it is still running on this host"
            f"{' with ' + _processes(others) if others else ''}: wait for it to end or stop it (kill {holder.pid})."
            " Two runs never write into one folder at once (choose another --output-dir to run beside it).")


def _elsewhere(path: str, holder: LockRecord) -> str:
    return (f"{os.path.dirname(path)} is being written by {holder.describe()}; if it has ended on {holder.host}, "
            f"delete {path} and run again. Two runs never write into one folder at once (choose another "
            "--output-dir to run beside it).")


def _unreadable(path: str, problem: str, holders: list[tuple[int, str]]) -> str:
    if holders:
        return (f"{path} cannot be read as a lock ({problem}), and "
                f"{_processes(sorted({p for p, _ in holders}), named=True)} hold it open: stop them, or choose "
                "another --output-dir")
    return (f"{path} cannot be read as a lock ({problem}); no process on this host holds it. If no run on "
            f"another host writes into {os.path.dirname(path)}, delete {path} and run again.")


def _why_not_joined(holder: LockRecord | None, problem: str | None, run_id: str) -> str:
    if problem:
        return f"its lock file cannot be read ({problem})"
    if holder.run_id != run_id:
        return f"the folder is now held by {holder.describe()}"
    return f"the process that took the lock, pid {holder.pid}, is gone"


def _not_joined(path: str, run_id: str, why: str) -> str:
    return (f"{path}: run {run_id}, which this process belongs to, no longer holds the output folder ({why}); "
            "it stops without writing. Run the whole command again to resume.")


def release(output_dir: str, run_id: str) -> None:
    """Let go of the lock this process holds for `run_id`; the last process of the run removes the file."""
    fds = _held.pop((os.path.abspath(output_dir), run_id), [])
    for fd in fds[1:]:
        os.close(fd)
    if fds:
        remove_if_last(fds[0], lock_path(output_dir))


def for_child(output_dir: str, run_id: str) -> tuple[int, Callable[[], None]]:
    """What a job this process starts needs to hold the run's lock from its first instruction, and to die with
    this process: an open file of the lock to pass to it (`pass_fds`; close it here once the job has started) and
    the `preexec_fn` that flock-s it in the child (so that /proc/locks names the child) and asks for SIGTERM when
    this process dies (`shards.folder.liveness.dies_with`).

    Raises:
        ResumeError: if this process does not hold the lock for `run_id` any more.
    """
    mine = _held.get((os.path.abspath(output_dir), run_id))
    fd = open_lock(lock_path(output_dir))
    if fd is None or not mine or not is_at(mine[0], lock_path(output_dir)) or not is_at(fd, lock_path(output_dir)):
        if fd is not None:
            os.close(fd)
        raise ResumeError(_not_joined(lock_path(output_dir), run_id, "its lock file was removed or replaced"))
    dies = dies_with(os.getpid())

    def preexec() -> None:
        fcntl.flock(fd, fcntl.LOCK_SH)
        dies()
    return fd, preexec


def take_for_stage(folders: list[str], stage: str, rank: int, gather: Callable[[Any], list[Any]]) -> str:
    """Every rank of a stage holds the lock of each folder it writes into (one run's, or a sweep's and each of its
    runs') before it writes: the launcher's run (its id passed down in the environment), or, for a stage run
    alone, the locks its rank 0 takes under a new run id, which `gather` (an all-gather of JSON) passes to the
    other ranks. Returns the run id.

    Raises:
        ResumeError: on every rank alike, naming the holder, if another run writes into one of the folders.
    """
    def say(line: str) -> None:
        print(f"[{stage}] {line}", file=sys.stderr, flush=True)

    run_id = os.environ.get(RUN_ID_ENV)
    if run_id:
        for folder in folders:
            acquire(folder, run_id, join_only=True, say=say)
        return run_id
    outcome = _take_all(folders, say) if rank == 0 else None
    outcome = gather(outcome)[0]
    if "error" in outcome:
        raise ResumeError(outcome["error"])
    if rank != 0:
        for folder in folders:
            acquire(folder, outcome["run_id"], join_only=True, say=say)
    return outcome["run_id"]


def _take_all(folders: list[str], say: Callable[[str], None]) -> dict[str, str]:
    """Take every folder's lock under a new run id, or none of them: {"run_id": ...} or {"error": ...}."""
    run_id, taken = new_run_id(), []
    try:
        for folder in folders:
            for message in acquire(folder, run_id, say=say):
                say(message)
            taken.append(folder)
    except ResumeError as e:
        for folder in taken:
            release(folder, run_id)
        return {"error": str(e)}
    return {"run_id": run_id}

"""One writer per output folder: the run that writes into a folder holds `<output>/run.lock` until it ends.

The lock names its holder (host, pid, start time, run id). The launcher takes it for its whole run and passes
the run id to its stages; a stage started alone takes it on its rank 0. The nodes of one multi-node run, and a
judge following the edits, share it through the run id. A second run into the same folder is refused at once,
naming the holder. A lock whose holder is gone is recognised on the same host (its pid no longer runs) and taken
over with a message; a lock held from another host cannot be checked from here, so the message says how to clear
it. Standard library only: the launcher takes it before it builds any environment.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from typing import Any

from shards.events import RUN_ID_ENV
from shards.resume import ResumeError
from shards.store import atomic_write_json

LOCK_NAME = "run.lock"


def lock_path(output_dir: str) -> str:
    return os.path.join(output_dir, LOCK_NAME)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def read_lock(output_dir: str) -> dict[str, Any] | None:
    try:
        with open(lock_path(output_dir), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"host": "?", "pid": 0, "run_id": "?", "started": "?", "unreadable": True}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    return (f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, "
            f"started {holder.get('started')})")


def acquire(output_dir: str, run_id: str) -> list[str]:
    """Take the folder's lock for `run_id`, or join it when that run already holds it.

    Returns:
        Messages to show (a stale lock taken over).

    Raises:
        ResumeError: naming the holder, if another run that may still be running holds it.
    """
    os.makedirs(output_dir, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": run_id,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    messages = []
    for _ in range(3):                         # a lock released or taken over between our looks is looked at again
        if _create(lock_path(output_dir), me):
            return messages
        holder = read_lock(output_dir)
        if holder is None:
            continue
        if holder.get("run_id") == run_id:
            return messages
        if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", 0))):
            messages.append(f"{lock_path(output_dir)}: {describe(holder)} is gone (no such process); taking its "
                            "lock over")
            atomic_write_json(lock_path(output_dir), me)
            return messages
        where = ("it is still running on this host" if holder.get("host") == me["host"] else
                 f"if it has ended on {holder.get('host')}, delete {lock_path(output_dir)} and run again")
        raise ResumeError(f"{output_dir} is being written by {describe(holder)}; {where}. Two runs never write "
                          "into one folder at once (choose another --output-dir to run beside it).")
    raise ResumeError(f"{lock_path(output_dir)}: could not take the lock (it kept changing hands)")


def _create(path: str, holder: dict[str, Any]) -> bool:
    """Create the lock file with its content in one step (written aside, then hard-linked into place, which
    fails if the name exists, on local and network filesystems alike), so that no one ever reads a half-written
    lock. Returns False if a lock is already there."""
    aside = f"{path}.{holder['host']}.{holder['pid']}"
    with open(aside, "w", encoding="utf-8") as f:
        json.dump(holder, f, indent=2)
    try:
        os.link(aside, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(aside)


def release(output_dir: str, run_id: str) -> None:
    """Give the lock back, if this run holds it."""
    holder = read_lock(output_dir)
    if holder is not None and holder.get("run_id") == run_id and holder.get("pid") == os.getpid():
        os.remove(lock_path(output_dir))


def take_for_stage(output_dir: str, stage: str) -> str:
    """A stage's rank 0 holds the folder's lock: the launcher's (shared through the run id it passes down), or
    its own when the stage runs alone; the other ranks leave it to rank 0. Returns the run id.

    Raises:
        ResumeError: naming the holder, if another run writes into the folder.
    """
    run_id = os.environ.get(RUN_ID_ENV) or new_run_id()
    if os.environ.get("RANK", "0") == "0":
        for message in acquire(output_dir, run_id):
            print(f"[{stage}] {message}", file=sys.stderr, flush=True)
    return run_id

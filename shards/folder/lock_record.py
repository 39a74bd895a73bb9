"""The output folder's lock file, `<output>/run.lock`: its record, and how it is created, replaced and removed
so that it is never seen half-written, and never seen unheld (see `shards.folder.lock` for who holds it and why).

Standard library only: the launcher uses it before any environment exists.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from shards.folder.records import ResumeError

LOCK_NAME = "run.lock"
SCHEMA_VERSION = 2


@dataclass(frozen=True, kw_only=True)
class LockRecord:
    """What `run.lock` says about the process that took it: enough to tell it from a later process with its pid."""

    schema_version: int = 1
    """2 since the lock is held open and flock-ed by every writer; 1 (absent): an earlier version's record."""
    run_id: str
    """The run that holds the folder; its launcher, its stages' ranks and its other nodes share the lock."""
    host: str
    """The host name of the process that took the lock; the kernel's flock is trusted on this host only."""
    pid: int
    """Its pid, on that host."""
    started: str
    """When it took the lock, local time (ISO 8601 with the offset)."""
    pid_start: int | None = None
    """When that process started, in clock ticks since boot: a later process with the same pid is another one."""
    boot_id: str | None = None
    """The host's boot id then: after a restart of the machine, the process is gone whatever its pid says."""
    command: str = "?"
    """Its command line, shortened, for messages."""

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started})"


def parse_record(data: bytes) -> tuple[LockRecord | None, str | None]:
    """The lock file's record, or why it is not one (never raises)."""
    if not data.strip():
        return None, "it is empty"
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not JSON"
    if not isinstance(raw, dict):
        return None, "not a JSON object"
    for key, kind, name in (("run_id", str, "a string"), ("host", str, "a string"), ("pid", int, "a number")):
        if key not in raw:
            return None, f"'{key}' is missing"
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            return None, f"'{key}' is not {name}"
    if raw["pid"] <= 0:
        return None, "'pid' is not a process id"
    known = {f.name: raw[f.name] for f in dataclasses.fields(LockRecord) if f.name in raw}
    return LockRecord(**{"started": "?", **known}), None


def record_json(record: LockRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def try_flock(fd: int, operation: int, path: str) -> bool:
    """flock without waiting; False if another process's lock is in the way.

    Raises:
        ResumeError: if the filesystem does not support file locks.
    """
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        raise ResumeError(f"{path}: the filesystem of the output folder does not support file locks (flock: "
                          f"{e.strerror}), so whether another run writes there cannot be told; choose an output "
                          "folder on a filesystem that does (Lustre: mounted with -o flock)") from None


def is_at(fd: int, path: str) -> bool:
    """Whether the file open as `fd` is still the one at `path` (not unlinked or replaced meanwhile)."""
    try:
        here, mine = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def open_lock(path: str) -> int | None:
    """The lock file at `path` open for reading, or None if there is none.

    Raises:
        ResumeError: if what is there is not a plain file (this tool writes nothing else there: a directory would
            not read, a named pipe would block the open forever, and a symbolic link could lead to another
            folder's lock or to a system file), or cannot be opened (another user's, say).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise ResumeError(_not_a_lock(path, f"a symbolic link (to {_link_target(path)})")) from None
        raise ResumeError(f"{path} cannot be read ({e.strerror}): if it is the lock of another user's run, that "
                          f"run may be writing into {os.path.dirname(path)}; ask its owner, or choose another "
                          "--output-dir") from None
    kind = os.fstat(fd).st_mode
    if stat.S_ISREG(kind):
        return fd
    os.close(fd)
    what = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe"}.get(stat.S_IFMT(kind), "not a plain file")
    raise ResumeError(_not_a_lock(path, what))


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _not_a_lock(path: str, what: str) -> str:
    return (f"{path} is {what}, not a lock file (this tool writes a plain file there); if no run writes into "
            f"{os.path.dirname(path)}, remove {path} and run again")


def make_folder(output_dir: str) -> None:
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ResumeError(f"{output_dir}: cannot create the output folder ({e.strerror})") from None


def create(path: str, record: LockRecord) -> int | None:
    """Create the lock file holding `record`, flock-ed (shared) before its name appears: written aside, then
    hard-linked into place, which fails if the name exists, on local and network filesystems alike. Returns the
    open file (the lock is held while it is open), or None if a lock is already there.

    Raises:
        ResumeError: naming the folder, if the file cannot be written (a full disk); nothing is left behind.
    """
    aside = f"{path}.{record.host}.{record.pid}"
    try:
        fd = os.open(aside, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise ResumeError(_cannot_create(path, e)) from None
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(json.dumps(record_json(record), indent=2).encode("utf-8"))
        try_flock(fd, fcntl.LOCK_SH, path)          # nobody else knows this file yet: it cannot be refused
        os.link(aside, path)
        return fd
    except BaseException as e:
        os.close(fd)
        if isinstance(e, FileExistsError):
            return None
        if isinstance(e, OSError):
            raise ResumeError(_cannot_create(path, e)) from None
        raise
    finally:
        os.remove(aside)


def _cannot_create(path: str, e: OSError) -> str:
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return (f"{os.path.dirname(path)}: cannot create the lock file {path} ({e.strerror}); "
            f"{'free some space' if full else 'make the folder writable'}, or choose another --output-dir")


def replace(fd: int, path: str, record: LockRecord) -> int | None:
    """Replace the lock open as `fd`, which this process holds exclusively (so no process holds it any more), by
    a fresh one holding `record`, with the same exclusive create as a fresh lock: of several processes replacing
    one stale lock, exactly one gets a new lock. Returns its open file, or None if another process came first.

    Raises:
        OSError: if the stale lock cannot be removed (a read-only folder).
    """
    if not is_at(fd, path):
        return None
    try:
        os.unlink(path)
    except FileNotFoundError:          # removed by hand meanwhile: the exclusive create still decides
        pass
    return create(path, record)


def remove_if_last(fd: int, path: str) -> None:
    """Remove the lock open as `fd` if no other process holds it any more (this one's shared lock is given up
    either way), then close it."""
    try:
        if try_flock(fd, fcntl.LOCK_EX, path) and is_at(fd, path):
            os.unlink(path)
    finally:
        os.close(fd)

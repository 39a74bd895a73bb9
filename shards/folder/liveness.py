"""What this host's kernel says about processes: who a pid is now, which processes hold a file's flock, and a
signal to a child when its parent dies.

A pid alone does not name a process: after a restart of the machine or of a container, the pid a lock recorded
may belong to anything (pid 1, or the very process that reads the lock). A process is named here by its pid, its
start time in clock ticks since boot, and the machine's boot id, read from Linux's /proc. Standard library only:
the launcher uses it before any environment exists, and both stage environments import it.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import socket
import sys
import time
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def boot_id() -> str | None:
    """This machine's boot id (the same in every container of one kernel; new after each boot)."""
    found = _read("/proc/sys/kernel/random/boot_id")
    return found.strip() if found else None


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat); None if no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()      # the command name in parentheses may hold spaces
    return int(fields[19]) if fields[0] != "Z" else None     # a zombie has ended: it only awaits its parent


def command(pid: int) -> str:
    """The command line of `pid`, shortened for a message ('?' if it cannot be read)."""
    found = _read(f"/proc/{pid}/cmdline")
    text = " ".join(found.split("\0")).strip() if found else "?"
    return text if len(text) <= 120 else text[:117] + "..."


def this_process() -> dict[str, Any]:
    """What names this process to a later reader on this host: host, pid, start ticks, boot id, command, time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": start_ticks(os.getpid()),
            "boot_id": boot_id(), "command": command(os.getpid()), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def still_runs(pid: int, pid_start: int | None, recorded_boot: str | None, started: str | None) -> bool | None:
    """Whether the process recorded as (`pid`, `pid_start`, `recorded_boot`) runs on this host now: False when the
    pid is free, the machine has restarted since, or the pid now names a process that started later; None when
    this host cannot tell (no /proc)."""
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return False
    if not os.path.isdir("/proc/self"):
        return None
    ticks = start_ticks(pid)
    if ticks is None:
        return False
    if pid_start is not None:
        return ticks == pid_start
    return _started_by(ticks, started)


def _started_by(ticks: int, started: str | None) -> bool | None:
    """A record without start ticks (written by an earlier version) has its wall-clock time: the process that
    wrote it started before it was written, so a process that started after that is another one."""
    try:
        written = datetime.datetime.strptime(started or "", "%Y-%m-%dT%H:%M:%S%z").timestamp()
        booted = next(int(line.split()[1]) for line in (_read("/proc/stat") or "").splitlines()
                      if line.startswith("btime "))
    except (ValueError, StopIteration):
        return None
    return booted + ticks / os.sysconf("SC_CLK_TCK") <= written + 1


def flock_holders(fd: int) -> list[tuple[int, str]]:
    """The processes holding a flock on the file open as `fd`, as (pid, "READ" or "WRITE"), from /proc/locks.

    The pid is the one that took the lock; one outside this pid namespace is not listed (the kernel still
    honours its lock)."""
    return [(pid, mode) for pid, mode in _flocks(fd) if pid > 0]


def held_on_this_host(fd: int) -> bool:
    """Whether a process of this host holds a flock on the file open as `fd`, in this pid namespace or not (then
    /proc/locks lists it as pid 0). A lock that a network filesystem enforces for a process of another host is
    not listed here, though it keeps this host's processes out."""
    return bool(_flocks(fd))


def _flocks(fd: int) -> list[tuple[int, str]]:
    st = os.fstat(fd)
    found = []
    for line in (_read("/proc/locks") or "").splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":     # POSIX locks, and waiters ("->"), are not holders
            continue
        try:
            major, minor, inode = parts[5].split(":")
            where, pid = (int(major, 16), int(minor, 16), int(inode)), int(parts[4])
        except ValueError:
            continue
        if where == (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino):
            found.append((pid, parts[3]))
    return found


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _set_parent_death_signal(libc: ctypes.CDLL | None) -> None:
    """Ask the kernel for SIGTERM when the thread that started this process ends (Linux's prctl)."""
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def dies_with(parent_pid: int) -> Callable[[], None]:
    """A `preexec_fn` for a child that must not outlive `parent_pid` (the launcher's stage jobs): SIGTERM when
    the parent dies, and no start at all if it died already (the signal would never come)."""
    libc = _libc()          # loaded here: between fork and exec the child should only make system calls

    def preexec() -> None:
        _set_parent_death_signal(libc)
        if os.getppid() != parent_pid:
            os._exit(1)
    return preexec


def rank_dies_with_torchrun() -> None:
    """A rank that torchrun started asks for SIGTERM when torchrun dies: torch's elastic agent starts every rank
    in a session of its own, so a torchrun killed with SIGKILL would leave its ranks running, still writing.

    A rank whose torchrun is already gone (adopted by init, pid 1) stops here. A stage run as a plain
    `python -m` from a shell is left alone."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or "LOCAL_RANK" not in os.environ:
        return
    _set_parent_death_signal(_libc())
    if os.getppid() == 1:
        raise SystemExit("error: torchrun, which started this rank, is gone; the rank stops before writing")

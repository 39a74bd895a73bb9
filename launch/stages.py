"""Running one stage as a torchrun job with its environment's interpreter, streaming its output live.

When a stage fails, the launcher names it and shows the failing rank's error and traceback, read from the
error files that torchrun's `record` decorator writes for each rank.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from shards.config import REPO_ROOT


class StageFailed(RuntimeError):
    """A stage's torchrun job ended with a nonzero status or ran past its time limit."""


def torchrun_command(python: str, stage: str, nproc: int, log_dir: str, stage_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone ... -m <stage>_stage ...` (standalone: a free local port)."""
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            f"--log-dir={log_dir}", "-m", f"{stage}_stage", *stage_args]


def run_stage(stage: str, command: list[str], log_dir: str, log_file, timeout_s: int | None) -> float:
    """Run one stage's job to the end, copying its output to the terminal and `log_file` as it comes.

    Returns:
        The stage's wall time in seconds.

    Raises:
        StageFailed: with the stage, the exit status and the failing rank's error.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)}
    start = time.monotonic()
    # A session of its own, so that a timeout or Ctrl-C can stop torchrun together with every rank.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                            start_new_session=True)
    tail: collections.deque[bytes] = collections.deque(maxlen=64)
    try:
        timed_out = _stream(proc, log_file, None if timeout_s is None else start + timeout_s, tail)
    except BaseException:
        _stop(proc)
        raise
    if timed_out:
        _stop(proc)
        raise StageFailed(f"{stage} stage ran past its time limit of {timeout_s}s and was stopped")
    if proc.returncode != 0:
        errors = _rank_errors(log_dir) or _root_cause(b"".join(tail).decode("utf-8", "replace"))
        raise StageFailed(f"{stage} stage failed (exit status {proc.returncode}){errors}")
    return time.monotonic() - start


def _stream(proc: subprocess.Popen, log_file, deadline: float | None, tail: collections.deque) -> bool:
    """Copy raw output bytes (tqdm's carriage returns included) until the process ends, keeping the last chunks
    in `tail`; True if timed out."""
    fd = proc.stdout.fileno()
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return True
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait()
            return False
        tail.append(chunk)
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        log_file.write(chunk)
        log_file.flush()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _rank_errors(log_dir: str) -> str:
    """The failing ranks' errors, first failure first, from torchrun's per-rank error.json files."""
    found = []
    for path in glob.glob(os.path.join(log_dir, "**", "error.json"), recursive=True):
        try:
            with open(path, encoding="utf-8") as f:
                message = json.load(f)["message"]
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(message, str):
            message = {"message": message, "extraInfo": {}}
        info = message.get("extraInfo", {})
        rank = os.path.basename(os.path.dirname(path))
        found.append((str(info.get("timestamp", "")), rank, message.get("message", ""), info.get("py_callstack", "")))
    if not found:
        return ""
    lines = []
    for _, rank, text, callstack in sorted(found):
        lines += [f"\n--- rank {rank}: {text}", callstack.rstrip()]
    return "\n".join(lines)


_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+)[^\n]*\n"
                         r".*?exitcode\s*:\s*([^\n]*)\n.*?traceback\s*:\s*([^\n]*)", re.DOTALL)


def _root_cause(output: str) -> str:
    """The failing rank as torchrun's summary names it, for a rank that left no error file (killed by a signal,
    e.g. kill -9 or the kernel's out-of-memory killer)."""
    found = _ROOT_CAUSE.search(output)
    if not found:
        return "; see its output above"
    rank, exitcode, cause = found.groups()
    return f"\n--- rank {rank}: exit code {' '.join(exitcode.split())}: {cause.strip()}"

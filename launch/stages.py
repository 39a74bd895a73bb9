"""Running the stages' jobs with their environments' interpreters, streaming their output live through the
console, one after the other or side by side.

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
import time
from dataclasses import dataclass, field

from shards.config import REPO_ROOT
from shards.folder.lock import for_child
from shards.folder.seats import seat_for_child


class StageFailed(RuntimeError):
    """A stage's job ended with a nonzero status or ran past its time limit."""


@dataclass(frozen=True)
class Rendezvous:
    """How this node's torchrun jobs meet the other nodes': none (one node, `--standalone`); with `--node-rank`,
    torchrun's static rendezvous at the endpoint (node 0 hosts it; the score job one port above the edit job's,
    so that a node still leaving the edit job never meets the score job); without it, the elastic c10d rendezvous,
    which numbers the nodes as they join and keeps the stages apart by the rendezvous id."""

    nnodes: int = 1
    node_rank: int | None = None
    endpoint: str | None = None
    run_id: str | None = None
    timeout_s: int = 600
    """How long torchrun waits for the other nodes (distributed.rendezvous_timeout_s)."""

    def torchrun_args(self, stage: str) -> list[str]:
        if self.nnodes == 1 and self.endpoint is None:
            return ["--standalone"]
        if self.node_rank is not None:
            host, _, port = self.endpoint.rpartition(":")
            port = int(port) + (stage == "score")
            return [f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}", f"--master-addr={host}",
                    f"--master-port={port}"]
        return [f"--nnodes={self.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={self.endpoint}",
                f"--rdzv-id={self.run_id}-{stage}"]

    def timeout_args(self) -> list[str]:
        """Bound torchrun's wait for the other nodes: the static rendezvous's store takes `timeout` (torch's
        default 600 s), c10d takes `join_timeout`."""
        if self.nnodes == 1 and self.endpoint is None:
            return []
        return [f"--rdzv-conf={'timeout' if self.node_rank is not None else 'join_timeout'}={self.timeout_s}"]


def torchrun_command(python: str, stage: str, nproc: int, log_dir: str, stage_args: list[str],
                     rendezvous: Rendezvous = Rendezvous()) -> list[str]:
    """`python -m torch.distributed.run ... -m <stage>_stage ...`; `--tee 3` keeps every rank's output in its own
    file under `log_dir` and prefixes each line on the console with the rank."""
    return [python, "-m", "torch.distributed.run", *rendezvous.torchrun_args(stage), *rendezvous.timeout_args(),
            f"--nproc-per-node={nproc}",
            f"--log-dir={log_dir}", "--tee=3", "-m", f"{stage}_stage", *stage_args]


@dataclass
class Job:
    """One stage's job, running."""

    stage: str
    command: list[str]
    log_dir: str
    proc: subprocess.Popen
    started: float
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))


def start_job(stage: str, command: list[str], log_dir: str, env: dict[str, str],
              lock: tuple[str, str] | None = None) -> Job:
    """Start a stage's command in a session of its own (so a timeout or Ctrl-C stops it with every rank).

    With `lock` (output folder, run id), the job holds the launcher's lock of the folder from its first
    instruction, and this node's seat of a multi-node run (`shards.folder.seats`), and gets SIGTERM when the launcher dies,
    even of SIGKILL: torchrun, in a session of its own, would otherwise run on, and a rerun would write beside it.
    """
    env = {**os.environ, **env, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)}
    held, preexec = for_child(*lock) if lock else (None, None)
    passed = tuple(fd for fd in (held, seat_for_child(*lock) if lock else None) if fd is not None)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                                start_new_session=True, pass_fds=passed, preexec_fn=preexec)
    finally:
        if held is not None:
            os.close(held)
    return Job(stage, command, log_dir, proc, time.monotonic())


def run_jobs(jobs: list[Job], console, log_file, timeout_s: int | None) -> dict[str, float]:
    """Stream the jobs' output through `console` (and raw into `log_file`) until all end.

    Returns:
        Each stage's wall time in seconds.

    Raises:
        StageFailed: with the stage, the exit status and the failing rank's error, once any job fails or runs past
            `timeout_s`; the other jobs are stopped first.
    """
    running, seconds = {job.proc.stdout.fileno(): job for job in jobs}, {}
    try:
        while running:
            late = [j for j in running.values() if timeout_s is not None and time.monotonic() - j.started > timeout_s]
            if late:
                raise StageFailed(f"{late[0].stage} stage ran past its time limit of {timeout_s}s and was stopped")
            ready, _, _ = select.select(list(running), [], [], 1.0)
            for fd in ready:
                job = running[fd]
                chunk = os.read(fd, 65536)
                if chunk:
                    job.tail.append(chunk)
                    console.feed(chunk, job.stage)
                    log_file.write(chunk)
                    log_file.flush()
                    continue
                job.proc.wait()
                console.close(job.stage)
                del running[fd]
                if job.proc.returncode != 0:
                    errors = _rank_errors(job.log_dir) or _root_cause(b"".join(job.tail).decode("utf-8", "replace"))
                    raise StageFailed(f"{job.stage} stage failed (exit status {job.proc.returncode}){errors}")
                seconds[job.stage] = time.monotonic() - job.started
    finally:
        for job in jobs:
            _stop(job.proc)
    return seconds


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
    e.g. kill -9 or the kernel's out-of-memory killer); or the nodes that did not meet, when torchrun's
    rendezvous timed out before any rank started."""
    found = _ROOT_CAUSE.search(output)
    if not found:
        return _rendezvous_timeout(output) or "; see its output above"
    rank, exitcode, cause = found.groups()
    return f"\n--- rank {rank}: exit code {' '.join(exitcode.split())}: {cause.strip()}"


_STORE_WAIT = re.compile(r"DistStoreError: Timed out after (\d+) seconds waiting for clients\. (\d+)/(\d+) clients")
_STORE_CONNECT = re.compile(r"DistNetworkError: The client socket has timed out after (\d+)ms while trying to "
                            r"connect to \((\S+), (\d+)\)")


def _rendezvous_timeout(output: str) -> str | None:
    """torchrun's own rendezvous timeouts, which it reports as a raw traceback, as one line."""
    prefix = "; the nodes did not all meet: "
    setting = " (distributed.rendezvous_timeout_s)"
    if found := _STORE_WAIT.search(output):
        seconds, joined, nodes = found.groups()
        return f"{prefix}{joined} of {nodes} nodes joined node 0's rendezvous within {seconds} s{setting}"
    if found := _STORE_CONNECT.search(output):
        ms, host, port = found.groups()
        return f"{prefix}node 0's rendezvous at {host}:{port} did not answer within {int(ms) // 1000} s{setting}"
    if "RendezvousTimeoutError" in output:
        return f"{prefix}not every node joined the c10d rendezvous within the join timeout{setting}"
    return None

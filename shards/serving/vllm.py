"""The judge server the launcher starts on each node (`score.server.start`): vLLM's OpenAI-compatible server,
from its own environment, for the score stage to send its questions to.

    score: {backend: server, server: {start: {args: [--tensor-parallel-size, "8"]}}}

It serves `score.model` under that name on 127.0.0.1 at `start.port`, with the GPUs it is given (or the CPU build
on the CPU), and writes its output to `logs/serve-<node>-<time>.log`. The launcher waits for `/health`, bounded by
`start.ready_timeout_s`, showing the log's last lines if the server exits or never answers; runs the score stage
against it; and stops it at the end, on failure and on Ctrl-C or SIGTERM (and, through a parent-death signal, when
the launcher itself is killed), its whole process group, so that no engine process is left behind. On several
nodes each node's launcher starts its own, and that node's score ranks send to it. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable, Iterator

from shards.config import REPO_ROOT
from shards.folder.liveness import dies_with

POLL_S, SAY_EVERY_S, STOP_GRACE_S = 2.0, 30.0, 30.0
LOG_LINES = 40
# vLLM's CPU build: where it runs, how much memory its KV cache takes (GiB), no thread pinning on a shared machine.
CPU_ENV = {"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# No usage reports: a benchmark's judge has no business calling home (and most clusters cannot).
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


class ServerFailed(RuntimeError):
    """The judge server did not start, or stopped; the message holds its log's last lines."""


def server_command(score, python: str) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server ...` for a `shards.config.ScoreConfig` (the `vllm serve`
    console script looks for a distribution named vllm, which the CPU build is not)."""
    start = score.server.start
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", score.model,
               "--served-model-name", score.model, "--host", "127.0.0.1", "--port", str(start.port),
               "--dtype", score.dtype]
    if score.trust_remote_code:
        command.append("--trust-remote-code")
    return command + list(start.args)


def server_env(score, device: str, visible: str | None = None) -> dict[str, str]:
    """The server's environment: the CPU build's settings on the CPU, or the first `start.gpus` of the GPUs it
    may use (`visible`, a CUDA_VISIBLE_DEVICES list: the judge's share with --judge-gpus; else the node's)."""
    start = score.server.start
    env = {**os.environ, **QUIET_ENV, "PYTHONUNBUFFERED": "1"}
    if device == "cpu":
        return {**env, **{k: os.environ.get(k, v) for k, v in CPU_ENV.items()}}
    visible = visible or os.environ.get("CUDA_VISIBLE_DEVICES")
    if start.gpus is not None:
        devices = visible.split(",") if visible else [str(i) for i in range(start.gpus)]
        visible = ",".join(devices[: start.gpus])
    if visible:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return env


@contextlib.contextmanager
def judge_server(score, device: str, python: str, log_path: str, say: Callable[[str], None],
                 visible: str | None = None) -> Iterator[str]:
    """Start the server of `score` (a `shards.config.ScoreConfig`) on `device` (cuda or cpu), wait until it
    answers, yield its URL; stop it (and everything it started) on the way out, however the block ends.

    Raises:
        ServerFailed: the server exited, or did not answer within `start.ready_timeout_s`, with its log's end.
    """
    with port_held(score.server.start.port):
        if port_taken(score.server.start.port):
            # Else whatever answers /health there (another run's judge, a leftover) would be taken for ours.
            raise ServerFailed(f"port {score.server.start.port} on 127.0.0.1 is taken by another process (another "
                               "run's judge server?): set score.server.start.port to a free port (or stop that "
                               "process)")
        yield from _started(score, device, python, log_path, say, visible)


def _started(score, device: str, python: str, log_path: str, say: Callable[[str], None],
             visible: str | None) -> Iterator[str]:
    start = score.server.start
    command = server_command(score, python)
    say(f"judge server: {' '.join(command)} (log: {log_path})")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=server_env(score, device, visible), start_new_session=True,
                                preexec_fn=dies_with(os.getpid()))
    try:
        url = f"http://127.0.0.1:{start.port}"
        waited = wait_until_ready(proc, url, start.ready_timeout_s, log_path, say)
        say(f"judge server ready at {url}/v1 in {waited:.0f}s, serving {score.model}")
        try:
            yield url + "/v1"
        except Exception as e:         # the score stage failed: say so, and whether the server had died under it
            if proc.poll() is None:
                raise
            raise ServerFailed(f"{e}\nThe judge server had exited (status {proc.returncode}): the judgements "
                               f"recorded are kept; run the same command again to resume{log_tail(log_path)}") \
                from None
        if proc.poll() is not None:
            raise ServerFailed(f"the judge server exited during the score stage (status {proc.returncode})"
                               f"{log_tail(log_path)}")
    finally:
        stop(proc)


def wait_until_ready(proc: subprocess.Popen, url: str, timeout_s: float, log_path: str,
                     say: Callable[[str], None]) -> float:
    """Seconds until `url/health` answers 200.

    Raises:
        ServerFailed: if the server exits first, or does not answer within `timeout_s`.
    """
    began = said = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise ServerFailed(f"the judge server exited with status {proc.returncode} before it was ready"
                               f"{log_tail(log_path)}")
        if healthy(url):
            return time.monotonic() - began
        now = time.monotonic()
        if now - began > timeout_s:
            raise ServerFailed(f"the judge server did not answer {url}/health within {timeout_s:.0f}s "
                               f"(score.server.start.ready_timeout_s){log_tail(log_path)}")
        if now - said >= SAY_EVERY_S:
            say(f"waiting for the judge server ({now - began:.0f}s of at most {timeout_s:.0f}s)")
            said = now
        time.sleep(POLL_S)


@contextlib.contextmanager
def port_held(port: int) -> Iterator[None]:
    """This launch's claim on `port` of this node while its server starts and runs (a lock file in the node's
    temporary folder, released when the launcher ends, however it ends). vLLM binds its port long before it
    listens, and two servers started together on one port both serve it, each getting some of the connections:
    without the claim, neither launch would know.

    Raises:
        ServerFailed: another launch on this node holds the port.
    """
    path = os.path.join(tempfile.gettempdir(), f"judge-server-port-{port}.lock")
    try:                       # read-only is enough for flock: another user's file serves as well
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # (creating it only when missing: a sticky /tmp refuses O_CREAT on others' files)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServerFailed(f"port {port}: another launch on this node is starting or running its judge server "
                               "there; set score.server.start.port to another port") from None
        yield
    finally:
        os.close(fd)


def port_taken(port: int) -> bool:
    """Whether a process listens on `port` of the loopback interface (a closed connection's TIME_WAIT does not
    count: the server binds with SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:         # not a port this user may take (below 1024): the server's log will say
            return e.errno == errno.EADDRINUSE
    return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (its engine and workers), SIGKILL after a grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    # Workers may linger a moment after the server itself: the group goes whole.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def log_tail(path: str, lines: int = LOG_LINES) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return ""
    return f"; the last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])

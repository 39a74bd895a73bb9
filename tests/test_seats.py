"""One launcher per node of a multi-node run: a second launch of a node that still runs is refused, not let in
beside it through the run's shared lock; a rerun waits for the stage jobs of a node whose launcher was killed."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, base_python, write_config
from shards.folder.records import ResumeError

_NODE = """
import os, subprocess, sys
from shards.folder.lock import acquire
from shards.folder.seats import take_seat, seat_for_child
folder, run_id, rank, nnodes, child_s = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
acquire(folder, run_id)
seat = take_seat(folder, run_id, None if rank == "-" else int(rank), nnodes)
child = None
if float(child_s):               # a stage job started as the launcher starts it, holding the seat it is passed
    child = subprocess.Popen(["sleep", child_s], pass_fds=(seat_for_child(folder, run_id),), start_new_session=True)
print(seat, child and child.pid, flush=True)
sys.stdin.read()
"""


def _node(folder: str, run_id: str, rank, nnodes: int, child_s: float = 0) -> tuple[subprocess.Popen, int, int]:
    """A stand-in node launcher holding the folder's lock and its seat until killed, with a stage job for
    `child_s` seconds; returns it, its seat and the job's pid."""
    proc = subprocess.Popen([sys.executable, "-c", _NODE, folder, run_id, "-" if rank is None else str(rank),
                             str(nnodes), str(child_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    seat, child = proc.stdout.readline().split()
    return proc, int(seat), int(child) if child.isdigit() else None


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_copy_of_a_running_node_is_refused_naming_it_and_a_free_seat_is_taken(tmp_path):
    from shards.folder.seats import take_seat

    folder = str(tmp_path)
    one, _, _ = _node(folder, "run-x", 1, 2)
    try:
        with pytest.raises(ResumeError, match=rf"node 1 of run run-x already runs \(node 1's launcher \(pid "
                                              rf"{one.pid} on {socket.gethostname()}, .*a second copy of a node"):
            take_seat(folder, "run-x", 1, 2)
        assert take_seat(folder, "run-x", 0, 2) == 0                      # node 0's seat is free
        assert take_seat(folder, "run-y", 1, 2) == 1                      # another run's seats are its own
    finally:
        _stop(one)
    assert take_seat(folder, "run-x", 1, 2, grace_s=0) == 1              # free once its launcher has ended


def test_without_node_ranks_each_launcher_takes_a_free_seat_and_one_too_many_is_refused(tmp_path):
    from shards.folder.seats import take_seat

    folder = str(tmp_path)
    first, seat, _ = _node(folder, "elastic", None, 2)
    second, other, _ = _node(folder, "elastic", None, 2)
    try:
        assert {seat, other} == {0, 1}
        with pytest.raises(ResumeError, match=r"all 2 nodes of run elastic already run"):
            take_seat(folder, "elastic", None, 2)
    finally:
        _stop(first, second)


def test_a_rerun_of_a_node_whose_launcher_was_killed_waits_for_its_stage_jobs(tmp_path):
    from shards.folder.seats import take_seat

    folder = str(tmp_path)
    killed, _, _ = _node(folder, "run-k", 0, 2, child_s=2.0)                # its stage job runs 2 s on
    _stop(killed)
    said, start = [], time.monotonic()
    assert take_seat(folder, "run-k", 0, 2, grace_s=30, say=said.append) == 0
    assert time.monotonic() - start > 1.0 and "stage jobs still hold the seat of run run-k" in said[0]
    lingering, _, job = _node(str(tmp_path / "other"), "run-l", 0, 2, child_s=60)
    _stop(lingering)
    try:
        with pytest.raises(ResumeError, match=r"gone, but its stage jobs did not stop within 1 s"):
            take_seat(str(tmp_path / "other"), "run-l", 0, 2, grace_s=1)
    finally:
        os.kill(job, signal.SIGKILL)


@pytest.mark.slow
def test_a_second_launch_of_a_node_of_a_running_multi_node_run_is_refused_at_once(tmp_path):
    # A stand-in node 1 of run "whole" holds the folder (the real one would be editing). The same command started
    # again joined the run's lock, met the running job's rendezvous and hung, holding the folder.
    config, out = write_config(tmp_path, {"distributed.nproc_per_node": 1}), str(tmp_path / "run")
    holder, _, _ = _node(out, "whole", 1, 2)
    try:
        again = subprocess.run([base_python(), "-m", "launch", "--config", config, "--output-dir", out,
                                "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "localhost:1",
                                "--rdzv-id", "whole"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                               capture_output=True, text=True, timeout=60)
    finally:
        _stop(holder)
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"node 1 of run whole already runs (node 1's launcher (pid {holder.pid} on" in again.stderr
    assert "stage:" not in again.stdout                                 # nothing was started

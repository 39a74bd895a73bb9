"""One writer per output folder: the lock, shared by one run's processes, refused to another, taken over when
its holder is gone; and how the nodes of one run meet."""

import json
import os
import socket
import subprocess

import pytest

from shards.resume import ResumeError
from shards.runlock import acquire, lock_path, read_lock, release


def test_a_second_run_is_refused_naming_the_holder_and_the_same_run_joins(tmp_path):
    assert acquire(str(tmp_path), "run-a") == []
    holder = read_lock(str(tmp_path))
    assert (holder["run_id"], holder["pid"], holder["host"]) == ("run-a", os.getpid(), socket.gethostname())
    assert acquire(str(tmp_path), "run-a") == []                     # another node of the same run
    with pytest.raises(ResumeError, match=rf"is being written by run run-a \(pid {os.getpid()} on "):
        acquire(str(tmp_path), "run-b")
    release(str(tmp_path), "run-a")
    assert not os.path.exists(lock_path(str(tmp_path)))
    acquire(str(tmp_path), "run-b")


def test_a_lock_whose_holder_is_gone_is_taken_over_with_a_message(tmp_path):
    dead = subprocess.Popen(["true"])                                 # a pid that no longer runs
    dead.wait()
    with open(lock_path(str(tmp_path)), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "run_id": "old", "started": "then"}, f)
    (message,) = acquire(str(tmp_path), "new")
    assert f"run old (pid {dead.pid}" in message and "is gone" in message
    assert read_lock(str(tmp_path))["run_id"] == "new"


def test_a_lock_held_from_another_host_says_how_to_clear_it(tmp_path):
    with open(lock_path(str(tmp_path)), "w") as f:
        json.dump({"host": "node-17", "pid": 4242, "run_id": "far", "started": "then"}, f)
    with pytest.raises(ResumeError, match=rf"if it has ended on node-17, delete {lock_path(str(tmp_path))}"):
        acquire(str(tmp_path), "mine")


def _join(args):
    folder, barrier = args
    barrier.wait()
    try:
        acquire(folder, "one-run")
        return "joined"
    except ResumeError as e:
        return str(e)


def test_the_nodes_of_one_run_taking_the_lock_at_the_same_moment_all_join_it(tmp_path):
    import multiprocessing

    with multiprocessing.Manager() as manager, multiprocessing.Pool(6) as pool:
        for attempt in range(20):                                     # the same race, many times over
            barrier = manager.Barrier(6)
            folder = str(tmp_path / str(attempt))
            assert pool.map(_join, [(folder, barrier)] * 6) == ["joined"] * 6
            assert read_lock(folder)["run_id"] == "one-run" and os.listdir(folder) == ["run.lock"]


def test_the_nodes_meet_statically_with_a_node_rank_and_elastically_without():
    from launch.stages import Rendezvous, torchrun_command

    static = Rendezvous(nnodes=2, node_rank=1, endpoint="node-a:29500", run_id="r")
    assert static.torchrun_args("edit") == ["--nnodes=2", "--node-rank=1", "--master-addr=node-a",
                                            "--master-port=29500"]
    assert static.torchrun_args("score")[-1] == "--master-port=29501"          # never the edit job's store
    elastic = Rendezvous(nnodes=2, endpoint="node-a:29500", run_id="r")
    assert elastic.torchrun_args("score") == ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node-a:29500",
                                              "--rdzv-id=r-score"]
    command = torchrun_command("py", "edit", 4, "logs", ["--config", "c"])
    assert command[:4] == ["py", "-m", "torch.distributed.run", "--standalone"] and "--nproc-per-node=4" in command

"""A node that never arrives: the launcher says whom it waits for, gives up within the rendezvous timeout, and
names the missing node in one line; torchrun's own rendezvous timeouts read as one line too."""

import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import REPO, base_python, write_config
from launch.rollcall import ROLL_CALL_DIR, NodesMissing, missing_nodes, roll_call
from launch.stages import Rendezvous, _root_cause
from shards.files import atomic_write_json


def _rendezvous(node_rank, timeout_s: int = 20) -> Rendezvous:
    return Rendezvous(2, node_rank, "node-a:29500", "job-7", timeout_s)


def _stale(out: str, stage: str, name: str, node_rank) -> None:
    """A node's file left by an earlier launch of the same rendezvous id."""
    atomic_write_json(os.path.join(out, ROLL_CALL_DIR, "job-7", stage, f"{name}.json"),
                      {"host": "node-b", "node_rank": node_rank, "pid": 4242, "beat": 300})


def test_missing_nodes_by_rank_or_by_count():
    assert missing_nodes([{"node_rank": 0}, {"node_rank": 2}], 3) == [1]
    assert missing_nodes([{"node_rank": 0}, {"node_rank": 1}], 2) == []
    assert missing_nodes([{"node_rank": None}], 3) == 2
    assert missing_nodes([{"node_rank": None}, {"node_rank": None}], 2) == 0


def test_two_nodes_meet_and_each_leaves_no_file_behind(tmp_path):
    out, done = str(tmp_path), []

    def node(rank: int, delay: float) -> None:
        time.sleep(delay)
        with roll_call(out, _rendezvous(rank), "edit", say=lambda line: None, beat_s=0.2):
            done.append((rank, time.monotonic()))
            time.sleep(1.0)                      # the stage runs; the beat goes on

    threads = [threading.Thread(target=node, args=(r, d)) for r, d in ((0, 0.0), (1, 1.5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(r for r, _ in done) == [0, 1]
    assert abs(done[0][1] - done[1][1]) < 2.0
    assert os.listdir(os.path.join(out, ROLL_CALL_DIR, "job-7", "edit")) == []


@pytest.mark.parametrize("node_rank, named", [(0, "node 1 did not arrive"), (None, "1 node did not arrive")])
def test_a_file_left_by_an_earlier_launch_does_not_count_and_the_missing_node_is_named(tmp_path, node_rank, named):
    _stale(str(tmp_path), "score", "node-b-4242", None if node_rank is None else 1)
    said = []
    start = time.monotonic()
    with pytest.raises(NodesMissing) as e:
        with roll_call(str(tmp_path), _rendezvous(node_rank, timeout_s=2), "score", say=said.append, beat_s=0.2):
            pytest.fail("the roll call passed without the second node")
    assert time.monotonic() - start < 5
    assert named in str(e.value) and "score stage" in str(e.value) and "node-a:29500 within 2 s" in str(e.value)
    assert said and "score stage: waiting for 1 more node at node-a:29500" in said[0]
    assert ("missing: node 1" if node_rank == 0 else "missing: 1 node") in said[0]


STATIC_HOST = """  File ".../static_tcp_rendezvous.py", line 67, in next_rendezvous
    self._store = TCPStore(  # type: ignore[call-arg]
torch.distributed.DistStoreError: Timed out after 6 seconds waiting for clients. 1/2 clients joined.
"""
STATIC_CLIENT = """    self._store = TCPStore(  # type: ignore[call-arg]
torch.distributed.DistNetworkError: The client socket has timed out after 5000ms while trying to connect to \
(localhost, 29731).
"""
C10D = """  File ".../dynamic_rendezvous.py", line 680, in run
    raise RendezvousTimeoutError
torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError
"""


def test_torchruns_own_rendezvous_timeouts_read_as_one_line():
    assert _root_cause(STATIC_HOST) == ("; the nodes did not all meet: 1 of 2 nodes joined node 0's rendezvous "
                                        "within 6 s (distributed.rendezvous_timeout_s)")
    assert _root_cause(STATIC_CLIENT) == ("; the nodes did not all meet: node 0's rendezvous at localhost:29731 "
                                          "did not answer within 5 s (distributed.rendezvous_timeout_s)")
    assert _root_cause(C10D) == ("; the nodes did not all meet: not every node joined the c10d rendezvous within "
                                 "the join timeout (distributed.rendezvous_timeout_s)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_launcher_whose_second_node_never_comes_names_it_within_the_timeout(pythons, tmp_path):
    config = write_config(tmp_path, {"distributed.nproc_per_node": 1, "distributed.rendezvous_timeout_s": 4})
    out = str(tmp_path / "run")
    start = time.monotonic()
    done = subprocess.run([base_python(), "-m", "launch", "--config", config, "--output-dir", out, "--nnodes", "2",
                           "--node-rank", "0", "--rdzv-endpoint", f"localhost:{_free_port()}", "--rdzv-id", "alone"],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
                          timeout=120)
    took = time.monotonic() - start
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[launch] edit stage: waiting for 1 more node at localhost:" in done.stdout
    assert "missing: node 1" in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("[launch] error: edit stage: node 1 did not arrive at localhost:")
    assert "within 4 s" in last and "arrived: node 0 on" in last
    assert "torch.distributed.run" not in done.stdout                        # torchrun was never started
    assert took < 4 + 30
    print(f"\nmissing node named after {took:.1f} s (timeout 4 s)")

"""The roll call before a stage starts on several nodes: each node's launcher waits until every node is there,
saying who is here and who is missing, and gives up with one line naming the missing nodes.

torchrun's own rendezvous waits in silence (node 0's store, or c10d's join timeout) and ends, ten minutes later,
in a raw `DistStoreError`. So the launchers meet first in the output folder, which every node sees by design:
each writes `progress/nodes/<rdzv-id>/<stage>/<host>-<pid>-<random>.json` (host, node rank, pid, a beat count;
the random part keeps apart containers that share a host name and pid) and rewrites it every `BEAT_S` seconds
with the count raised until its launch ends; then it removes it. While waiting it prints every `SAY_EVERY_S`
seconds whom it waits for, and after `distributed.rendezvous_timeout_s` it stops.

Which files count: a node counts another only once it has seen that file appear, or change, after its own roll
call began. A file left by an earlier launch of the same rendezvous id (a requeued SLURM job keeps its id) or by a
node that crashed never changes again, so it is never counted, however recent it is. This compares no clocks (the
nodes' clocks may differ) and needs no agreed generation: the beat itself is the proof of life. The beat goes on
while the stage runs, so the node that arrives last still sees the others' files change.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from launch.stages import Rendezvous, StageFailed
from shards.files import atomic_write_json

ROLL_CALL_DIR = os.path.join("progress", "nodes")
BEAT_S = 2.0
SAY_EVERY_S = 10.0
POLL_S = 0.5


class NodesMissing(StageFailed):
    """Not every node arrived within the rendezvous timeout; nothing of the stage was started."""


class Presence:
    """This node's file in a roll call, rewritten by a thread every `beat_s` seconds until `close`."""

    def __init__(self, folder: str, me: dict[str, Any], beat_s: float = BEAT_S):
        self.path = os.path.join(folder, f"{me['host']}-{me['pid']}-{uuid.uuid4().hex[:8]}.json")
        self.me, self._stop = {**me, "beat": 0}, threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._beat, args=(beat_s,), daemon=True)
        self._thread.start()

    def _write(self) -> None:
        self.me["beat"] += 1
        atomic_write_json(self.path, self.me)

    def _beat(self, beat_s: float) -> None:
        while not self._stop.wait(beat_s):
            with contextlib.suppress(OSError):    # a full or unreachable disk: the others then say this node is gone
                self._write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@contextlib.contextmanager
def roll_call(output_dir: str, rendezvous: Rendezvous, stage: str, say: Callable[[str], None] = print,
              beat_s: float = BEAT_S) -> Iterator[None]:
    """Wait until all `rendezvous.nnodes` nodes of this launch are at `stage`'s roll call; stay present inside.

    Raises:
        NodesMissing: after `rendezvous.timeout_s` seconds, naming the missing nodes (by node rank when the
            nodes have one, else their number) and the ones that arrived.
    """
    folder = os.path.join(output_dir, ROLL_CALL_DIR, rendezvous.run_id, stage)
    me = {"host": socket.gethostname(), "node_rank": rendezvous.node_rank, "pid": os.getpid()}
    before = _read(folder)                        # what was there before this roll call: counted once it changes
    presence = Presence(folder, me, beat_s)
    try:
        _wait(folder, before, presence, rendezvous, f"{stage} stage", say)
        yield
    finally:
        presence.close()


def _wait(folder: str, before: dict[str, Any], presence: Presence, rendezvous: Rendezvous, what: str,
          say: Callable[[str], None]) -> None:
    start, said, arrived = time.monotonic(), None, {}
    mine = os.path.basename(presence.path)
    while True:
        now = _read(folder)
        arrived.update({name: node for name, node in now.items() if name == mine or before.get(name) != node})
        missing = missing_nodes(list(arrived.values()), rendezvous.nnodes)
        if not missing:
            return
        waited = time.monotonic() - start
        if waited >= rendezvous.timeout_s:
            raise NodesMissing(f"{what}: {_missing(missing)} did not arrive at {rendezvous.endpoint} within "
                               f"{rendezvous.timeout_s} s (distributed.rendezvous_timeout_s); arrived: "
                               f"{_names(arrived.values())}. Nothing of the {what} was started here: start the "
                               f"missing node(s) with this same command, or check that they see {folder}")
        if said is None or waited - said >= SAY_EVERY_S:
            said = waited
            count = missing if isinstance(missing, int) else len(missing)
            say(f"[launch] {what}: waiting for {count} more node{'s' * (count > 1)} at {rendezvous.endpoint} "
                f"(here: {_name(presence.me)}; arrived: {_names(arrived.values())}; missing: {_missing(missing)}; "
                f"giving up in {rendezvous.timeout_s - waited:.0f} s)")
        time.sleep(POLL_S)


def _read(folder: str) -> dict[str, Any]:
    """Each node file in `folder` by name (a file being replaced, or not JSON, is read next time)."""
    found = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.endswith(".json"):
                with contextlib.suppress(OSError, ValueError):
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        found[name] = json.load(f)
    return found


def missing_nodes(arrived: list[dict[str, Any]], nnodes: int) -> list[int] | int:
    """The node ranks not among `arrived` when every node has one (static rendezvous), else how many nodes are
    missing (c10d numbers the nodes only as they join); [] or 0 when all are there."""
    ranks = [node.get("node_rank") for node in arrived]
    if ranks and None not in ranks:
        return sorted(set(range(nnodes)) - set(ranks))
    return max(nnodes - len(arrived), 0)


def _missing(missing: list[int] | int) -> str:
    if isinstance(missing, int):
        return f"{missing} node{'s' * (missing > 1)}"
    return ("node " if len(missing) == 1 else "nodes ") + ", ".join(map(str, missing))


def _name(node: dict[str, Any]) -> str:
    if node.get("node_rank") is None:
        return f"{node.get('host')} (pid {node.get('pid')})"
    return f"node {node['node_rank']} on {node.get('host')}"


def _names(nodes) -> str:
    return ", ".join(sorted(_name(n) for n in nodes)) or "none"

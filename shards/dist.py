"""Distributed state for the torchrun jobs: one init, one teardown, one JSON all-gather.

No module-level rank or device: `init_distributed` reads torchrun's environment once and returns a frozen
`DistState`. Run without torchrun (no RANK in the environment), it is a world of one and the collectives are
no-ops, so a stage can also be debugged as a plain `python -m`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistState:
    """Who this process is in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_s: int) -> DistState:
    """Join the torchrun job: cuda:LOCAL_RANK with nccl when CUDA is present, otherwise CPU with gloo.

    Args:
        timeout_s: How long a collective may wait for the other ranks before it fails.
    """
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        # set_device before init_process_group, so NCCL binds this rank to its own GPU and not to GPU 0.
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return DistState(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def finish() -> None:
    """On success, wait until every rank is done before any leaves (rank 0 may still be writing files).

    A rank that tears down alone while its peers still hold the process group was seen once to abort at exit
    ("terminate called without an active exception", gloo); leaving together is the usual remedy.
    """
    barrier()


def teardown() -> None:
    """Leave the process group, if one was joined (on failure too: then without waiting for anyone)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if dist.is_initialized():
        dist.barrier()


def all_gather_json(obj: Any, state: DistState) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank.

    The payload travels as UTF-8 JSON bytes in uint8 tensors (padded to the longest), so no pickle is involved,
    unlike `all_gather_object`.
    """
    if not dist.is_initialized():
        return [obj]
    payload = torch.frombuffer(bytearray(json.dumps(obj).encode("utf-8")), dtype=torch.uint8).to(state.device)
    size = torch.tensor([payload.numel()], dtype=torch.int64, device=state.device)
    sizes = [torch.zeros_like(size) for _ in range(state.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=state.device)
    padded[: payload.numel()] = payload
    chunks = [torch.zeros_like(padded) for _ in range(state.world_size)]
    dist.all_gather(chunks, padded)
    return [json.loads(c[: int(s.item())].cpu().numpy().tobytes().decode("utf-8")) for c, s in zip(chunks, sizes)]


def map_in_parallel(items: Sequence[Any], fn: Callable[[Any], Any], state: DistState) -> list[Any]:
    """`fn(item)` for every item, each rank taking every world_size-th; all results, in order, on every rank.

    `fn` must return JSON-ready values. Used to verify shard checksums, or make thumbnails, once in total rather
    than once per rank.
    """
    mine = {str(i): fn(items[i]) for i in range(state.rank, len(items), state.world_size)}
    merged = {int(k): v for share in all_gather_json(mine, state) for k, v in share.items()}
    return [merged[i] for i in range(len(items))]


class Terminated(BaseException):
    """SIGTERM arrived: torchrun stops the other ranks this way when one rank fails.

    A BaseException, like KeyboardInterrupt, so no `except Exception` in a library swallows it.
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated`, so `with` exits run (the edit stage closes its open part).

    Only around Python-level work loops: a handler runs between bytecodes, so a rank blocked inside a collective
    would not run it until the collective returned, and torchrun would wait its 30 s grace before SIGKILL.
    Outside the block SIGTERM keeps its default and ends the rank at once.
    """
    def handler(signum, frame):
        raise Terminated(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

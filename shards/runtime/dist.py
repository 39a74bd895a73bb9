"""Distributed state for the torchrun jobs: one init, one teardown, one JSON all-gather.

No module-level rank or device: `init_distributed` reads torchrun's environment once and returns a frozen
`DistState`. Run without torchrun (no RANK in the environment), it is a world of one and the collectives are
no-ops, so a stage can also be debugged as a plain `python -m`.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from shards.runtime.device import resolve_device


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


def threads_asked(omp_num_threads: str) -> bool:
    """Whether OMP_NUM_THREADS asks for a thread count: a positive number (OpenMP's list "4,2" starts with one).
    Empty (`export OMP_NUM_THREADS=`), 0 or text is ignored by torch, which then takes every core, and by torchrun,
    which only fills in an absent variable."""
    first = omp_num_threads.split(",")[0].strip()
    return first.isascii() and first.isdigit() and int(first) > 0


def init_distributed(device_setting: str, timeout_s: int) -> DistState:
    """Join the torchrun job on the configured device: cuda:LOCAL_RANK with nccl, or the CPU with gloo.

    Args:
        device_setting: `cuda`, `cpu` or `auto` (CUDA when usable, else the CPU): never the CPU unless asked.
        timeout_s: How long a collective may wait for the other ranks before it fails.

    Raises:
        DeviceError: with `cuda`, before anything loads, if this rank has no usable GPU.
    """
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_setting, local_rank)
    if device.type == "cpu" and not threads_asked(os.environ.get("OMP_NUM_THREADS", "")):
        # torchrun sets OMP_NUM_THREADS=1 for each of several ranks but leaves a single rank every core, and the
        # thread count moves float sums in their last bits: one thread unless asked keeps an image (and a score)
        # the same whatever the rank count.
        torch.set_num_threads(1)
    if device.type == "cuda":
        # set_device before init_process_group, so NCCL binds this rank to its own GPU and not to GPU 0.
        torch.cuda.set_device(device)
    if "RANK" in os.environ:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout_s),
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


class WorkQueue:
    """Positions 0..size-1 handed out one at a time to whichever rank asks next: an atomic counter in torchrun's
    key-value store. A rank that finishes early takes more, so a slow GPU, node or sample does not leave the others
    idle at the end. A position taken by a rank that then dies is simply not recorded as done, and is redone on
    resume. All ranks must create the queue together (it agrees on a key no other run uses)."""

    def __init__(self, size: int, state: DistState, name: str):
        token = all_gather_json(uuid.uuid4().hex if state.is_main else None, state)[0]
        self.size, self._key, self._taken = size, f"work-queue/{name}/{token}", 0
        # The default store is the one torchrun's rendezvous set up; every rank of the job reaches it.
        self._store = dist.distributed_c10d._get_default_store() if dist.is_initialized() else None

    def __iter__(self) -> Iterator[int]:
        while True:
            if self._store is not None:
                position = self._store.add(self._key, 1) - 1
            else:
                position, self._taken = self._taken, self._taken + 1
            if position >= self.size:
                return
            yield position



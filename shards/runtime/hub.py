"""A checkpoint named by its hub id is fetched once per cache, not once per rank.

With a hub id, every rank calling `from_pretrained` at the same moment would race for the same download (58 GB
for the editor), which file locks on network filesystems do not reliably serialise. Instead one rank per cache
fetches it first, with a visible line, while the others wait: local rank 0 of each node, or global rank 0 when
every node shares one cache (`distributed.shared_hub_cache`). Then every rank loads from the local snapshot.
A failed fetch stops every rank with a message naming the model and what to set.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch.distributed as dist

from shards.runtime.dist import DistState


class HubError(RuntimeError):
    """A checkpoint that could not be fetched; the message names it and what to set."""


def _snapshot(model: str, local_only: bool) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(model, local_files_only=local_only)


def fetch_once(model: str, state: DistState, shared_cache: bool, log, what: str) -> str:
    """The local folder of `model`: itself when it is on disk, else its hub snapshot, fetched by one rank per
    cache while the others wait.

    The waiting goes through torchrun's key-value store, not a collective: a download of many gigabytes may take
    longer than `distributed.timeout_s` bounds a collective, and if the fetching rank dies, torchrun stops the
    others. Every rank learns every fetcher's outcome, so a failed fetch stops them all.

    Raises:
        HubError: on every rank, if a fetch failed.
    """
    if os.path.exists(model):          # a local folder or file: nothing to fetch
        return model
    store = dist.distributed_c10d._get_default_store() if dist.is_initialized() else None
    groups = 1 if shared_cache or store is None else int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    group = 0 if groups == 1 else int(os.environ.get("GROUP_RANK", "0"))
    fetcher = state.is_main if groups == 1 else state.local_rank == 0
    key = f"hub-fetch/{what}/{model}/"
    outcome: dict[str, Any] = {}
    if fetcher:
        log.info("fetching %s %s into the hub cache (%s); the other ranks wait for it", what, model,
                 "one rank for every node" if shared_cache else "one rank per node")
        start = time.perf_counter()
        try:
            outcome["path"] = _snapshot(model, local_only=False)
            log.info("fetched %s in %.1f s: %s", model, time.perf_counter() - start, outcome["path"])
        except Exception as e:  # noqa: BLE001 - any failure is reported to every rank with what to set
            outcome["error"] = (f"{what} {model} could not be fetched from the hub ({type(e).__name__}: {e}). "
                                "Check the name, set HF_TOKEN for a gated or private model, HF_HOME or "
                                "HF_HUB_CACHE for where the cache lives, or HF_HUB_OFFLINE=1 to use a cache "
                                "filled beforehand")
        if store is not None:
            store.set(key + str(group), json.dumps(outcome))
    outcomes = [outcome] if store is None else [_wait(store, key + str(g)) for g in range(groups)]
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        raise HubError(errors[0])
    try:
        return outcome.get("path") or _snapshot(model, local_only=True)
    except Exception as e:  # noqa: BLE001 - the fetching rank's cache is not this rank's
        raise HubError(f"{what} {model} was fetched, but this rank does not find it in its cache ({e}); on "
                       "several nodes sharing one cache, set distributed.shared_hub_cache: true") from None


def _wait(store, key: str) -> dict[str, Any]:
    """A fetcher's outcome, once it has set it (however long its download takes)."""
    while not store.check([key]):
        time.sleep(1.0)
    return json.loads(store.get(key).decode("utf-8"))

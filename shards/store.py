"""Shard files: the edited images, the contract between the edit stage and the score stage.

Edited images are HWC uint8 RGB tensors in safetensors files under `<output>/shards/`, keyed by position; each
part is written under a temporary name and renamed into place, then recorded in its rank's journal (`ShardWriter`),
so a reader never sees half a part and a recorded part is always whole. `shards.manifest` lists them for the
score stage. No pickle anywhere: safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from shards.files import atomic_write, sha256_bytes, sha256_file
from shards.journal import JournalRead, JournalWriter, journal_path, journal_paths, read_journals

SHARD_FORMAT = "qwen-edit-bench/shard-v1"
SHARDS_DIR = "shards"


class ShardError(RuntimeError):
    """A shard or manifest that is missing, changed or malformed; the message names the file."""


def shard_name(rank: int, world_size: int, part: int) -> str:
    """Self-describing file name, e.g. `edit-r00003-of-00006-p0007.safetensors`."""
    return f"edit-r{rank:05d}-of-{world_size:05d}-p{part:04d}.safetensors"


def tensor_key(position: int) -> str:
    """The key of the `position`-th image in a shard part (recorded in the manifest as the sample's `key`)."""
    return f"image-{position:05d}"


def write_shard(output_dir: str, name: str, images: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Write one shard part atomically and describe it.

    Args:
        output_dir: The run's output folder; the shard goes to `<output_dir>/shards/<name>`.
        images: Tensor key -> HWC uint8 tensor.
        samples: The manifest entries of these samples (stored in the shard's header too).

    Returns:
        The shard's manifest entry: path (relative to output_dir), sha256, num_samples.
    """
    from safetensors.torch import save

    metadata = {"format": SHARD_FORMAT, "samples": json.dumps(samples, ensure_ascii=False)}
    data = save({key: t.contiguous() for key, t in images.items()}, metadata=metadata)
    relpath = f"{SHARDS_DIR}/{name}"
    atomic_write(os.path.join(output_dir, relpath), data)
    return {"path": relpath, "sha256": sha256_bytes(data), "num_samples": len(images)}


def read_image(output_dir: str, sample: dict[str, Any]):
    """The edited image of one manifest sample as an HWC uint8 tensor."""
    from safetensors import safe_open

    with safe_open(os.path.join(output_dir, sample["shard"]), framework="pt") as f:
        return f.get_tensor(sample["key"])


def shard_problem(output_dir: str, shard: dict[str, Any]) -> str | None:
    """Why a recorded shard cannot be trusted (missing, or not matching its sha256), or None if it can."""
    path = os.path.join(output_dir, shard["path"])
    if not os.path.isfile(path):
        return f"shard {shard['path']} is missing ({path})"
    actual = sha256_file(path)
    if actual != shard["sha256"]:
        return (f"shard {shard['path']} does not match its checksum (expected sha256 {shard['sha256']}, "
                f"found {actual}); it was changed or truncated")
    return None


def verify_shards(output_dir: str, shards: Iterable[dict[str, Any]]) -> None:
    """Check that each shard exists and matches its recorded sha256.

    Raises:
        ShardError: naming the first shard that is missing or differs.
    """
    for shard in shards:
        problem = shard_problem(output_dir, shard)
        if problem:
            raise ShardError(problem)


def read_parts(output_dir: str) -> JournalRead:
    """Every shard part the edit stage recorded in `output_dir`, from runs of any world size (not yet verified)."""
    return read_journals(journal_paths(output_dir, "edit"))


def pixels_sha256(image) -> str:
    """Digest of an HWC uint8 image's pixels: a judged result is reused only for the very same image."""
    return sha256_bytes(image.contiguous().numpy().tobytes())


class ShardWriter:
    """One rank's edited images: closes a shard part every `per_shard` samples and records it in the journal.

    A part is renamed into place first and recorded second, so a recorded part is always complete; a part on disk
    but not recorded (killed in between) is never trusted and its samples are edited again. Leaving the `with`
    block, for any reason short of SIGKILL, closes the open part, so finished images are kept.
    """

    def __init__(self, output_dir: str, rank: int, world_size: int, per_shard: int):
        self.output_dir, self.rank, self.world_size, self.per_shard = output_dir, rank, world_size, per_shard
        self.parts: list[dict[str, Any]] = []
        self._images: list[Any] = []
        self._entries: list[dict[str, Any]] = []
        self._next_part = _next_free_part(output_dir, rank, world_size)
        self._journal = JournalWriter(journal_path(output_dir, "edit", rank, world_size))

    def add(self, entry: dict[str, Any], image) -> None:
        """Queue one sample's manifest entry and HWC uint8 image; writes a part when enough are queued."""
        self._images.append(image)
        self._entries.append({**entry, "sha256": pixels_sha256(image)})
        if len(self._entries) >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the queued samples as the next shard part and record it (nothing if none are queued)."""
        if not self._entries:
            return
        name = shard_name(self.rank, self.world_size, self._next_part)
        # Tensor keys are positions, never sample ids: an id such as "__metadata__" is reserved by safetensors.
        keys = [tensor_key(i) for i in range(len(self._entries))]
        for entry, key in zip(self._entries, keys):
            entry.update(shard=f"{SHARDS_DIR}/{name}", key=key)
        shard = write_shard(self.output_dir, name, dict(zip(keys, self._images)), self._entries)
        part = {**shard, "rank": self.rank, "world_size": self.world_size, "samples": self._entries}
        self._journal.append([part])
        self.parts.append(part)
        self._next_part += 1
        self._images, self._entries = [], []

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()
        finally:
            self._journal.close()


def _next_free_part(output_dir: str, rank: int, world_size: int) -> int:
    """The first part number above every part file of this rank and world size on disk, recorded or not."""
    prefix, suffix = shard_name(rank, world_size, 0).split("0000.")
    folder = os.path.join(output_dir, SHARDS_DIR)
    numbers = [name[len(prefix): -len(suffix) - 1] for name in (os.listdir(folder) if os.path.isdir(folder) else [])
               if name.startswith(prefix) and name.endswith("." + suffix)]
    return max((int(n) for n in numbers if n.isdigit()), default=-1) + 1

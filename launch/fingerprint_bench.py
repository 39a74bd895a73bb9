"""How long fingerprinting a local checkpoint takes: once in full, then from the digest cache.

    python3 -m launch.fingerprint_bench [--model DIR | --size-gb 4 --files 2] [--json PATH]

Times `shards.folder.identity.model_fingerprint`, the function every resume check calls, on a model folder (or on a
folder of random files it writes, when none is given): the first call reads every byte, the second finds every
file in the cache and reads none. A first call right after the files were written reads them from the page cache;
point `--model` at a checkpoint that has not been read since boot to time the disk too. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from shards.folder.identity import HASH_THREADS, model_fingerprint


def _write_random_files(folder: str, total_bytes: int, files: int) -> None:
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(os.path.join(folder, f"model-{i + 1:05d}-of-{files:05d}.safetensors"), "wb") as f:
            for _ in range(total_bytes // files >> 20):
                f.write(block)


def measure(model: str, cache_dir: str) -> dict:
    """Seconds for a first (full) and a second (cached) fingerprint of `model`, and the bytes read."""
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(model) for f in names)
    cache = os.path.join(cache_dir, "model-digests.json")
    start = time.perf_counter()
    first = model_fingerprint(model, cache)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    second = model_fingerprint(model, cache)
    cached_s = time.perf_counter() - start
    assert first == second
    return {"bytes": size, "full_s": round(full_s, 3), "full_gb_per_s": round(size / full_s / 1e9, 3),
            "cached_s": round(cached_s, 4), "threads": HASH_THREADS, "cpus": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m launch.fingerprint_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a checkpoint folder to fingerprint (default: random files written here)")
    parser.add_argument("--size-gb", type=float, default=4.0, help="size of the random files in all")
    parser.add_argument("--files", type=int, default=2, help="number of random files")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = os.path.join(tmp, "model")
            os.makedirs(model)
            _write_random_files(model, int(args.size_gb * 1e9), args.files)
        figures = {"command": "python3 -m launch.fingerprint_bench", **measure(model, tmp)}
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()

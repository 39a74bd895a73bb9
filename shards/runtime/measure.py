"""What both stages' benchmarks read off a process and a device: host memory, and a clock the device keeps up with."""

from __future__ import annotations

import json
import subprocess
import sys

import torch


def host_memory() -> dict[str, int]:
    """This process's resident memory in bytes: `rss` now, `peak_rss` (the high-water mark since it started), and
    how much of it is private (`anon`) versus file pages (`file`: memory-mapped weights, which every process that
    maps the same files shares through the page cache). Linux only (/proc)."""
    fields = {"VmRSS": "rss", "VmHWM": "peak_rss", "RssAnon": "anon", "RssFile": "file"}
    found = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                found[fields[key]] = int(value.split()[0]) * 1024
    return found


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read next counts it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_device(name: str) -> torch.device:
    """The benchmark's device: `cpu`, or the first GPU for `cuda`."""
    return torch.device("cpu") if name == "cpu" else torch.device("cuda", 0)


def build_in_child(module: str, device: str, dtype: str, layers: int | None, folder: str) -> dict:
    """Run `python -m <module> --build-only ...` to make a random checkpoint in `folder`, in a child process, so
    that this process's host memory shows loading alone; returns the JSON line the child prints last."""
    command = [sys.executable, "-m", module, "--build-only", "--device", device, "--dtype", dtype,
               "--checkpoint-dir", folder, *(["--layers", str(layers)] if layers else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building the random checkpoint failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_figures(figures: dict, path: str | None) -> None:
    """Print the benchmark's JSON and write it to `path` when given."""
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")

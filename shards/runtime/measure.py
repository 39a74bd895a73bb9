"""What both stages' benchmarks read off a process and a device: host memory, a clock the device keeps up with,
the device and its peak, and a module's FLOPs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import torch

# Dense bf16 tensor-core peaks (FLOP/s) of the devices this project benchmarks on, from the vendors' data sheets.
PEAK_BF16 = {"H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.0e12, "H200": 989.4e12}


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


def build_in_child(module: str, device: str, dtype: str, layers: int | None, folder: str,
                   more: tuple[str, ...] = ()) -> dict:
    """Run `python -m <module> --build-only ... <more>` to make a random checkpoint in `folder`, in a child process,
    so that this process's host memory shows loading alone; returns the JSON line the child prints last."""
    command = [sys.executable, "-m", module, "--build-only", "--device", device, "--dtype", dtype,
               "--checkpoint-dir", folder, *(["--layers", str(layers)] if layers else []), *more]
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


class FirstCall:
    """Keeps the keyword arguments of a module's first forward call (its real shapes), to count FLOPs after."""

    def __init__(self, module: torch.nn.Module):
        self.kwargs = None
        self._handle = module.register_forward_pre_hook(self._grab, with_kwargs=True)

    def _grab(self, _module, _args, kwargs):
        if self.kwargs is None:
            self.kwargs = dict(kwargs)
        self._handle.remove()


def forward_flops(module: torch.nn.Module, kwargs: dict) -> int:
    """FLOPs of one forward with these inputs, as torch's FlopCounterMode counts them (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(**kwargs)
    return counter.get_total_flops()


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in props.name), None)
        return {"type": "cuda", "name": props.name, "memory_bytes": props.total_memory,
                "peak_bf16_flops": peak, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "peak_bf16_flops": None}

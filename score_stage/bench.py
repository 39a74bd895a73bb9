"""Benchmark of the score stage's judge: seconds per judged image in `expected` and in `generate` mode.

    python -m score_stage.bench --device cuda --batch-size 8 --images 32 --json judge.json
    python -m score_stage.bench --device cpu --layers 1 --batch-size 2 --images 2 --image-size 256 --json j.json

Builds Qwen3-VL-30B-A3B with random weights on the device in bf16 (the published config in `configs/arch/`;
`--layers N` keeps N text and vision layers at real width, all 128 experts), in a child process that saves it;
or takes a checkpoint with `--model`. Then loads it with the stage's own `InProcessJudge` (load time, peak host RSS), and
asks it about `--images` queries, each showing an original and an edited picture as the real config's reasoning
dimension does, `--batch-size` at a time: once in `expected` mode (two forward passes per batch) and once in
`generate` mode (greedy, up to `--max-new-tokens`; a random judge never stops early, so this is the longest
answer). Each mode warms up on one batch first. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import torch
from PIL import Image, ImageDraw

from score_stage.judges.in_process import InProcessJudge
from shards.config import Dimension, ScoreConfig
from shards.runtime.device import DTYPES
from shards.runtime.measure import bench_device, build_in_child, host_memory, sync, write_figures
from shards.runtime.provenance import package_versions

DIMENSION = Dimension(
    images="original_and_edited",
    system_prompt="You judge instruction-based image edits. Answer: Score: X (X an integer from 0 to 10), then "
                  "one sentence.",
    user_prompt_template="Edit instruction: {instruction}\nIs the second picture the first one edited as "
                         "instructed, and physically plausible? Score: X")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m score_stage.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: cuda)")
    parser.add_argument("--layers", type=int, help="keep N text and vision layers at real width (default: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="queries per forward batch")
    parser.add_argument("--images", type=int, default=32, help="timed queries per mode")
    parser.add_argument("--image-size", type=int, default=1024, help="side of each picture in pixels")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generate mode's longest answer")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--model", help="benchmark this judge checkpoint instead of random weights")
    parser.add_argument("--checkpoint-dir", help="where the random checkpoint is written (default: a temp folder)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child's job
    return parser.parse_args(argv)


def _build_only(args: argparse.Namespace) -> None:
    from score_stage.real_arch import build_random_judge

    start = time.perf_counter()
    model, processor = build_random_judge(torch.device(args.device), DTYPES[args.dtype], args.layers)
    built = time.perf_counter() - start
    model.save_pretrained(args.checkpoint_dir)
    processor.save_pretrained(args.checkpoint_dir)
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters()), "build_s": round(built, 2),
                      "save_s": round(time.perf_counter() - start - built, 2)}))


def queries(count: int, side: int) -> list[tuple[dict, Dimension, list[Image.Image]]]:
    made = []
    for i in range(count):
        original = Image.new("RGB", (side, side), (30 + 20 * i % 200, 120, 200))
        edited = original.copy()
        ImageDraw.Draw(edited).ellipse((side // 4, side // 4, side * 3 // 4, side * 3 // 4), fill=(220, 40, 40))
        entry = {"id": f"q{i}", "category": "physics", "instruction": "Put a red ball in the middle.",
                 "description": None}
        made.append((entry, DIMENSION, [original, edited]))
    return made


def run_mode(judge: InProcessJudge, work: list, batch_size: int, device: torch.device) -> dict:
    """One warm-up batch, then every query in batches: seconds per judged image, peak GPU memory."""
    judge.ask(work[:batch_size])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    answers = [a for i in range(0, len(work), batch_size) for a in judge.ask(work[i: i + batch_size])]
    sync(device)
    seconds = time.perf_counter() - start
    figures = {"s_per_image": round(seconds / len(work), 4), "seconds": round(seconds, 3), "queries": len(work),
               "scored": sum(a["score"] is not None for a in answers)}
    if device.type == "cuda":
        figures["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Build or take a judge, load it the stage's way, time both modes, write the JSON."""
    args = parse_args(argv)
    if args.build_only:
        return _build_only(args)
    device = bench_device(args.device)
    with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as tmp:
        model = args.model or os.path.join(tmp, "qwen3-vl-30b-a3b-random")
        built = None if args.model else build_in_child("score_stage.bench", args.device, args.dtype, args.layers,
                                                        model)
        cfg = ScoreConfig(model=model, dtype=args.dtype, mode="expected", batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, prompts={})
        before = host_memory()
        sync(device)
        start = time.perf_counter()
        judge = InProcessJudge(cfg, device)
        with torch.inference_mode():  # every weight read once, as a GPU load does (on the CPU: mapped pages in)
            for tensor in judge.model.state_dict().values():
                tensor.sum()
        sync(device)
        load_s, after = time.perf_counter() - start, host_memory()
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(model) for f in files
                   if f.endswith(".safetensors"))
        work = queries(args.images, args.image_size)
        modes = {"expected": run_mode(judge, work, args.batch_size, device)}
        judge.cfg = dataclasses.replace(cfg, mode="generate")
        modes["generate"] = run_mode(judge, work, args.batch_size, device)
    figures = {
        "command": "python -m score_stage.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": ({"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
                   if device.type == "cuda" else {"type": "cpu", "cpus": os.cpu_count()}),
        "versions": package_versions(),
        "setup": {"layers": args.layers, "batch_size": args.batch_size, "images": args.images,
                  "image_size": args.image_size, "pictures_per_query": 2, "max_new_tokens": args.max_new_tokens,
                  "dtype": args.dtype, "model": args.model or "random weights, configs/arch/qwen3-vl-30b-a3b"},
        "build": built, "load_s": round(load_s, 3), "weights_bytes": size,
        "host_rss_before_load_bytes": before["rss"], "host_peak_rss_bytes": after["peak_rss"],
        "host_rss_after_load": after, "host_peak_rss_over_weights": round(after["peak_rss"] / size, 3),
        "modes": modes,
    }
    write_figures(figures, args.json)


if __name__ == "__main__":
    main()

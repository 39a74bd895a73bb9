"""Benchmark of the score stage's judge: seconds per judged image in `expected` and in `generate` mode, in process
and served by vLLM, on the same inputs.

    python -m score_stage.bench --device cuda --batch-size 8 --images 32 --backends transformers,server --json j.json
    python -m score_stage.bench --device cpu --layers 1 --batch-size 2 --images 2 --image-size 256 --json j.json

Builds Qwen3-VL-30B-A3B with random weights on the device in bf16 (the published config in `configs/arch/`;
`--layers N` keeps N text and vision layers at real width, all 128 experts), in a child process that saves it;
or takes a checkpoint with `--model`. Then loads it with the stage's own `InProcessJudge` (load time, peak host RSS), and
asks it about `--images` queries, each showing an original and an edited picture as the real config's reasoning
dimension does, `--batch-size` at a time: once in `expected` mode (two forward passes per batch) and once in
`generate` mode (greedy, up to `--max-new-tokens`; a random judge never stops early, so this is the longest
answer). Each mode warms up on one batch first. With `server` among `--backends`, it also starts vLLM on the same
checkpoint from the server's environment (`.envs/serve`, or `.envs/serve-cpu` on the CPU; built on first use),
the launcher's way (`launch.serve.judge_server`), and asks it the same queries through the stage's `ServedJudge`,
`--concurrency` in flight; then reports the largest difference between the two backends' expected scores.
Writes one JSON file.
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
    parser.add_argument("--backends", default="transformers",
                        help="comma-separated: transformers (in process), server (vLLM started here)")
    parser.add_argument("--concurrency", type=int, default=8, help="the served judge's requests in flight")
    parser.add_argument("--server-args", default="", help="more vLLM arguments, e.g. '--tensor-parallel-size 8'")
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


def run_mode(judge, work: list, batch_size: int, device: torch.device) -> dict:
    """One warm-up batch, then every query in batches: seconds per judged image, peak GPU memory, the scores."""
    judge.ask(work[:batch_size])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    answers = [a for i in range(0, len(work), batch_size) for a in judge.ask(work[i: i + batch_size])]
    sync(device)
    seconds = time.perf_counter() - start
    figures = {"s_per_image": round(seconds / len(work), 4), "seconds": round(seconds, 3), "queries": len(work),
               "scored": sum(a["score"] is not None for a in answers), "scores": [a["score"] for a in answers]}
    if device.type == "cuda":
        figures["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Build or take a judge, time both modes with each backend on the same queries, write the JSON."""
    args = parse_args(argv)
    if args.build_only:
        return _build_only(args)
    device = bench_device(args.device)
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as tmp:
        model = args.model or os.path.join(tmp, "qwen3-vl-30b-a3b-random")
        built = None if args.model else build_in_child("score_stage.bench", args.device, args.dtype, args.layers,
                                                        model)
        cfg = ScoreConfig(model=model, dtype=args.dtype, mode="expected", batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, prompts={})
        work = queries(args.images, args.image_size)
        figures = {"build": built, "backends": {}}
        if "transformers" in backends:
            judge, loading = load_in_process(cfg, model, device)
            figures.update(loading)
            figures["backends"]["transformers"] = both_modes(judge, cfg, work, args.batch_size, device)
            del judge
        if "server" in backends:
            figures["backends"]["server"] = served(cfg, args, work, device, tmp)
    if {"transformers", "server"} <= set(backends):
        pairs = zip(*(figures["backends"][b]["expected"]["scores"] for b in ("transformers", "server")))
        figures["largest_expected_score_difference"] = max(abs(a - b) for a, b in pairs)
    write_figures({"command": "python -m score_stage.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "device": ({"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
                              if device.type == "cuda" else {"type": "cpu", "cpus": os.cpu_count()}),
                   "versions": package_versions(),
                   "setup": {"layers": args.layers, "batch_size": args.batch_size, "images": args.images,
                             "image_size": args.image_size, "pictures_per_query": 2,
                             "max_new_tokens": args.max_new_tokens, "dtype": args.dtype,
                             "concurrency": args.concurrency,
                             "model": args.model or "random weights, configs/arch/qwen3-vl-30b-a3b"},
                   **figures}, args.json)


def load_in_process(cfg: ScoreConfig, model: str, device: torch.device) -> tuple[InProcessJudge, dict]:
    """The stage's in-process judge, loaded and every weight read once; its load time and host memory."""
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
    return judge, {"load_s": round(load_s, 3), "weights_bytes": size, "host_rss_before_load_bytes": before["rss"],
                   "host_peak_rss_bytes": after["peak_rss"], "host_rss_after_load": after,
                   "host_peak_rss_over_weights": round(after["peak_rss"] / size, 3)}


def both_modes(judge, cfg: ScoreConfig, work: list, batch_size: int, device: torch.device) -> dict:
    modes = {"expected": run_mode(judge, work, batch_size, device)}
    judge.cfg = dataclasses.replace(cfg, mode="generate")
    modes["generate"] = run_mode(judge, work, batch_size, device)
    return modes


def served(cfg: ScoreConfig, args: argparse.Namespace, work: list, device: torch.device, tmp: str) -> dict:
    """Start vLLM on the checkpoint as the launcher would, ask it the same queries through the stage's
    `ServedJudge`, stop it; the seconds it took to answer /health, and both modes' figures."""
    from score_stage.judges.served import ServedJudge
    from shards.config import REPO_ROOT, ServerConfig, ServerStart
    from shards.serving.vllm import judge_server

    name = "serve-cpu" if device.type == "cpu" else "serve"
    python = os.path.join(REPO_ROOT, ".envs", name, "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(f"no server environment at {python}: build it with python3 -m launch --config "
                         f"configs/{'demo-served' if device.type == 'cpu' else 'qwen-image-edit-2511-served'}.yaml "
                         "--prepare-only")
    length = ["--max-model-len", str(_context_length(cfg.model, 8192))]
    cpu_args = ["--enforce-eager", *length, "--max-num-seqs", str(args.concurrency)]
    start = ServerStart(port=_free_port(), args=[*(cpu_args if device.type == "cpu" else length),
                                                 "--limit-mm-per-prompt", '{"video": 0}', "--max-logprobs", "20",
                                                 *args.server_args.split()])
    server_cfg = dataclasses.replace(cfg, backend="server", server=ServerConfig(start=start,
                                                                                max_concurrency=args.concurrency))
    began = time.perf_counter()
    with judge_server(server_cfg, device.type, python, os.path.join(tmp, "serve.log"), print):
        ready_s = time.perf_counter() - began
        judge = ServedJudge(server_cfg)
        try:
            figures = both_modes(judge, server_cfg, work, args.batch_size, torch.device("cpu"))
        finally:
            judge.close()
    return {"server_ready_s": round(ready_s, 1), "server_args": start.args, **figures}


def _context_length(model: str, wanted: int) -> int:
    """`wanted` tokens of context, or the checkpoint's own maximum if shorter (vLLM refuses a longer one)."""
    with open(os.path.join(model, "config.json"), encoding="utf-8") as f:
        text = json.load(f).get("text_config", {})
    return min(wanted, text.get("max_position_embeddings", wanted))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()

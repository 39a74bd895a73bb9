"""Benchmark of the edit stage: the bare diffusers call and the stage's own fast path, side by side, one process.

    python -m edit_stage.bench --device cuda --height 1024 --width 1024 --steps 40 --images 3 --json edit.json
    python -m edit_stage.bench --device cpu --layers 1 --height 64 --width 64 --steps 2 --images 1 --json e.json
    python -m edit_stage.bench --pipeline FluxKontextPipeline --device cpu --layers 1 --height 64 --width 64 ...

Builds the editor family's released architecture (`--pipeline`, default Qwen-Image-Edit-2511) with random weights
on the device in bf16 (the published configs in `configs/arch/`; `--layers N` keeps N layers of every stack at
real width), in a child process that saves it as a diffusers checkpoint; or takes a checkpoint with `--model`.
Then, in this process: loads it with the stage's own `load_pipeline` (load time, peak host RSS, the weights'
bytes), edits the same images with the same seeds twice: the **bare** call exactly as the model card shows it
(`model_card` of the family), and the stage's **fast** path (`edit_image`) with every speed option of the family
that runs on the device switched on whatever the config defaults; reports seconds per image and per
denoising step after warm-up (compilation warm-up on its own), peak GPU memory, the largest pixel difference and
the PSNR between the two, and the transformer's achieved FLOP/s against the device's peak. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from edit_stage.families import builds, family, parameter_count
from edit_stage.pipeline import edit_image, load_pipeline, to_uint8
from edit_stage.speed import TOLERANCE, applied_options, apply_speed, options_for_device
from shards.config import EditConfig, EditSpeed
from shards.editors import FAMILIES
from shards.runtime.device import DTYPES
from shards.runtime.measure import (FirstCall, bench_device, build_in_child, device_info, forward_flops,
                                    host_memory, sync, write_figures)
from shards.runtime.provenance import package_versions

PROMPTS = ("Turn the day into night.", "Make the glass fall off the table.", "Replace the red ball with a cube.",
           "Show the ice after an hour in the sun.")



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edit_stage.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="QwenImageEditPlusPipeline", choices=sorted(FAMILIES),
                        help="the editor family (default: QwenImageEditPlusPipeline, Qwen-Image-Edit-2511)")
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: cuda)")
    parser.add_argument("--layers", type=int, help="keep N layers of every stack at real width (default: all)")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40, help="denoising steps (the model card's guidance)")
    parser.add_argument("--images", type=int, default=3, help="timed images per variant, after warm-up")
    parser.add_argument("--warmup", type=int, default=1, help="untimed images per variant first")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--model", help="benchmark this diffusers checkpoint instead of random weights")
    parser.add_argument("--checkpoint-dir", help="where the random checkpoint is written (default: a temp folder)")
    parser.add_argument("--options", help="comma-separated speed options of the fast path (default: every one "
                                          "that runs on the device)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child's job
    return parser.parse_args(argv)


def _build_only(args: argparse.Namespace) -> None:
    build = builds(args.pipeline)
    start = time.perf_counter()
    pipe = build.build_random(torch.device(args.device), DTYPES[args.dtype], args.layers)
    built = time.perf_counter() - start
    pipe.save_pretrained(args.checkpoint_dir, safe_serialization=True)
    print(json.dumps({"parameters": parameter_count(pipe, args.pipeline), "build_s": round(built, 2),
                      "save_s": round(time.perf_counter() - start - built, 2)}))


def weights_bytes(model: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(model) for f in files
               if f.endswith(".safetensors"))


def load(model: str, device: torch.device, dtype: str, pipeline: str) -> tuple[object, dict]:
    """The stage's loader, timed, with every weight read once (on a GPU they are there already; on the CPU the
    memory-mapped pages are read in, as a forward pass would)."""
    before = host_memory()
    sync(device)
    start = time.perf_counter()
    cfg = EditConfig(model=model, pipeline=pipeline, dtype=dtype, num_inference_steps=2,
                     **family(pipeline).model_card(64, 64)[1])
    pipe = load_pipeline(cfg, device)
    with torch.inference_mode():
        for name in family(pipeline).WEIGHTED:
            for tensor in getattr(pipe, name).state_dict().values():
                tensor.sum()
    sync(device)
    seconds = time.perf_counter() - start
    after = host_memory()
    size = weights_bytes(model)
    return pipe, {"load_s": round(seconds, 3), "weights_bytes": size, "host_rss_before_load_bytes": before["rss"],
                  "host_peak_rss_bytes": after["peak_rss"], "host_rss_after_load": after,
                  "host_peak_rss_over_weights": round(after["peak_rss"] / size, 3)}


def inputs(count: int, height: int, width: int) -> list[tuple[Image.Image, str, int]]:
    """The same drawn images, prompts and seeds for both variants."""
    made = []
    for i in range(count):
        image = Image.new("RGB", (width, height), (40 + 50 * i % 200, 120, 200 - 30 * i % 150))
        draw = ImageDraw.Draw(image)
        draw.ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(220, 60 + 40 * i % 180, 40))
        draw.rectangle((0, height * 3 // 4, width, height), fill=(90, 70, 50))
        made.append((image, PROMPTS[i % len(PROMPTS)], 1000 + i))
    return made


class StepClock:
    """End times of denoising steps, read without synchronising the device (CUDA events) where there is one."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def __call__(self, step: int) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds_per_step(self) -> float | None:
        """Mean time of the steps after the first (whose end also covers prompt encoding and the VAE)."""
        if len(self.marks) < 2:
            return None
        if self.device.type == "cuda":
            return self.marks[0].elapsed_time(self.marks[-1]) / 1000 / (len(self.marks) - 1)
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


def bare_call(pipe, args, image: Image.Image, prompt: str, seed: int, clock: StepClock) -> np.ndarray:
    """The pipeline as its model card calls it (PIL out), at the benchmark's size and steps; an RGBA image
    (Qwen-Image-2.1) is made RGB as the stage makes it."""
    def on_step_end(_pipe, step, _timestep, callback_kwargs):
        clock(step)
        return callback_kwargs

    with torch.inference_mode():
        out = pipe(image=image, prompt=prompt, num_inference_steps=args.steps, num_images_per_prompt=1,
                   generator=torch.Generator("cpu").manual_seed(seed), height=args.height, width=args.width,
                   callback_on_step_end=on_step_end, **family(args.pipeline).model_card(args.height, args.width)[0]
                   ).images[0]
    if out.mode == "RGBA":
        from edit_stage.families.qwen21 import rgba_to_rgb

        return to_uint8(rgba_to_rgb(np.asarray(out, dtype=np.float32) / 255.0), "bench").numpy()
    return np.asarray(out)


def run_variant(name: str, edit, work: list, args, device: torch.device) -> tuple[dict, list[np.ndarray]]:
    """Warm-up (timed on its own), then the timed images: seconds per image and per step, peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for image, prompt, seed in work[: args.warmup]:
        edit(image, prompt, seed, StepClock(device))
    sync(device)
    warmup = time.perf_counter() - start
    outputs, per_image, per_step = [], [], []
    for image, prompt, seed in work:
        clock = StepClock(device)
        sync(device)
        start = time.perf_counter()
        outputs.append(edit(image, prompt, seed, clock))
        sync(device)
        per_image.append(time.perf_counter() - start)
        per_step.append(clock.seconds_per_step())
        print(f"[bench] {name}: image {len(outputs)}/{len(work)} in {per_image[-1]:.2f} s", flush=True)
    figures = {"s_per_image": round(float(np.median(per_image)), 4),
               "s_per_step": round(float(np.median(per_step)), 4) if per_step[0] is not None else None,
               "s_per_image_all": [round(s, 4) for s in per_image], "warmup_s": round(warmup, 3),
               "warmup_images": min(args.warmup, len(work))}
    if device.type == "cuda":
        figures["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return figures, outputs


def compare(bare: list[np.ndarray], fast: list[np.ndarray]) -> dict:
    """Largest absolute pixel difference (0-255) and PSNR over all images."""
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(bare, fast)]
    mse = float(np.mean([np.mean(d.astype(np.float64) ** 2) for d in diffs]))
    return {"max_abs_diff": int(max(d.max() for d in diffs)),
            "mean_abs_diff": round(float(np.mean([d.mean() for d in diffs])), 5),
            "psnr_db": math.inf if mse == 0 else round(10 * math.log10(255.0 ** 2 / mse), 3)}


def patch_embed_timing(pipe, device: torch.device, repeats: int = 5) -> dict:
    """The text encoder's vision patch embedding as shipped (Conv3d) and as one matmul (`linear_patch_embed`), at
    the condition image's patch count: where torch >= 2.9 runs this Conv3d 10-20x slower (pytorch #174051), it
    shows here."""
    from edit_stage.speed import patch_embed_as_matmul, vision_tower

    embed = vision_tower(pipe.text_encoder).patch_embed
    patches = torch.randn(784, embed.proj.weight[0].numel(), device=device, dtype=embed.proj.weight.dtype)
    timings, outputs = {}, {}
    with torch.inference_mode():
        for name, forward in (("conv3d", embed.forward), ("matmul", lambda x: patch_embed_as_matmul(embed, x))):
            forward(patches)
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                outputs[name] = forward(patches)
            sync(device)
            timings[f"{name}_s"] = round((time.perf_counter() - start) / repeats, 6)
    return {**timings, "patches": 784,
            "max_abs_diff": float((outputs["conv3d"].float() - outputs["matmul"].float()).abs().max())}


def fast_options(args: argparse.Namespace, device: torch.device) -> EditSpeed:
    """`--options`, or every speed option of the family that runs on the device.

    Raises:
        SystemExit: for an option in `--options` that does not apply to the family.
    """
    on_device, applies = options_for_device(device), FAMILIES[args.pipeline].speed
    if args.options is not None:
        names = [name for name in args.options.split(",") if name]
        if set(names) - set(applies):
            raise SystemExit(f"--options: {', '.join(sorted(set(names) - set(applies)))} does not apply to "
                             f"{args.pipeline} (its options: {', '.join(applies)})")
    else:
        names = [f.name for f in dataclasses.fields(EditSpeed) if getattr(on_device, f.name) and f.name in applies]
    return EditSpeed(**{name: (on_device.attention_backend if name == "attention_backend" else True)
                        for name in names})


def main(argv: list[str] | None = None) -> None:
    """Build or take a checkpoint, load it the stage's way, run bare then fast, compare, write the JSON."""
    args = parse_args(argv)
    if args.build_only:
        return _build_only(args)
    device = bench_device(args.device)
    arch = os.path.basename(builds(args.pipeline).ARCH)
    settings = family(args.pipeline).model_card(args.height, args.width)[1]
    with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as tmp:
        model = args.model or os.path.join(tmp, f"{arch}-random")
        built = None if args.model else build_in_child("edit_stage.bench", args.device, args.dtype, args.layers,
                                                        model, ("--pipeline", args.pipeline))
        pipe, loading = load(model, device, args.dtype, args.pipeline)
        work = inputs(args.images, args.height, args.width)
        first = FirstCall(pipe.transformer)
        bare, bare_out = run_variant("bare", lambda *a: bare_call(pipe, args, *a), work, args, device)
        passes = 2 if settings["true_cfg_scale"] > 1 and settings.get("negative_prompt") is not None else 1
        flops = forward_flops(pipe.transformer, first.kwargs) * passes * args.steps   # CFG: two passes a step
        speed = fast_options(args, device)
        patch_embed = patch_embed_timing(pipe, device) if "linear_patch_embed" in FAMILIES[args.pipeline].speed \
            else None
        apply_speed(pipe, speed)
        cfg = EditConfig(model=model, pipeline=args.pipeline, dtype=args.dtype, num_inference_steps=args.steps,
                         height=args.height, width=args.width, speed=speed, **settings)
        fast, fast_out = run_variant(
            "fast", lambda image, prompt, seed, clock: to_uint8(edit_image(pipe, cfg, image, prompt, seed, clock),
                                                                "bench").numpy(), work, args, device)
    fast["options"] = applied_options(speed)
    same = compare(bare_out, fast_out)
    peak = device_info(device)["peak_bf16_flops"]
    figures = {
        "command": "python -m edit_stage.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device_info(device), "versions": {**package_versions(), "cuda": torch.version.cuda},
        "setup": {"pipeline": args.pipeline, "layers": args.layers, "height": args.height, "width": args.width,
                  "steps": args.steps, **settings, "images": args.images, "dtype": args.dtype,
                  "model": args.model or f"random weights, configs/arch/{arch}"},
        "build": built, **loading,
        "variants": {"bare": bare, "fast": fast},
        "speedup": round(bare["s_per_image"] / fast["s_per_image"], 4),
        **same, "tolerance": TOLERANCE,
        "within_tolerance": same["max_abs_diff"] <= TOLERANCE["max_abs_diff"]
        and same["psnr_db"] >= TOLERANCE["psnr_db"],
        "patch_embed": patch_embed,
        "transformer_flops_per_image": flops,
        "achieved_flops": {name: round(flops / v["s_per_image"]) for name, v in (("bare", bare), ("fast", fast))},
        "achieved_fraction_of_peak": None if peak is None else {
            name: round(flops / v["s_per_image"] / peak, 4) for name, v in (("bare", bare), ("fast", fast))},
    }
    write_figures(figures, args.json)

if __name__ == "__main__":
    main()

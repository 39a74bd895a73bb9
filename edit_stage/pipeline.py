"""Loading an editor pipeline onto a rank's device and editing one sample with it; what differs by family (the
components with weights, the call) is in `edit_stage.families`."""

from __future__ import annotations

import os
from typing import Any, Callable

import diffusers
import numpy as np
import torch
import transformers
from PIL import Image

from edit_stage.denoise import edit_plus
from edit_stage.families import family
from edit_stage.speed import apply_speed
from shards.config import EditConfig
from shards.dataset import Sample, open_image
from shards.runtime.device import DTYPES


def load_pipeline(cfg: EditConfig, device: torch.device):
    """Load the configured pipeline class from `cfg.model` onto this rank's device, with `cfg.speed` applied.

    Each weighted component is read from its memory-mapped safetensors files directly onto `device`
    (`device_map={"": device}`, through accelerate): no rank builds a private copy of the model in host memory
    first, and ranks on one node share the files' pages in the page cache.

    Raises:
        ValueError: if the checkpoint's model_index.json names another pipeline class than the config.
    """
    cls = getattr(diffusers, cfg.pipeline)
    index = cls.load_config(cfg.model)
    if index.get("_class_name") != cfg.pipeline:
        raise ValueError(f"edit.pipeline is {cfg.pipeline} but the checkpoint {cfg.model} is a "
                         f"{index.get('_class_name')}; use QwenImageEditPlusPipeline for -2509/-2511 checkpoints, "
                         "QwenImageEditPipeline for the first release, QwenImage21Pipeline for Qwen-Image-2.1, "
                         "FluxKontextPipeline for FLUX.1 Kontext")
    dtype = DTYPES[cfg.dtype]
    # Loading bars of every rank would only tear each other apart on the console; the stage shows its own.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    # The components that hold weights: each is loaded on its own, straight onto the rank's device.
    components = {name: _load_component(cfg, name, index[name], dtype, device)
                  for name in family(cfg.pipeline).WEIGHTED}
    # torch_dtype, not dtype: diffusers 0.39 ignores dtype= (0.42 only deprecates torch_dtype=).
    # use_safetensors=True: with the default (None) diffusers falls back to pickled .bin weights.
    pipe = cls.from_pretrained(cfg.model, **components, torch_dtype=dtype, use_safetensors=True,
                               trust_remote_code=cfg.trust_remote_code)
    pipe.set_progress_bar_config(disable=True)
    apply_lora(pipe, cfg)
    apply_speed(pipe, cfg.speed)
    return pipe


def apply_lora(pipe, cfg: EditConfig) -> None:
    """Load `cfg.lora` with diffusers' `load_lora_weights` at their scales, and fuse them into the weights when
    `cfg.fuse_lora` (then unload the adapter layers, keeping the fused weights)."""
    if not cfg.lora:
        return
    names = [f"lora{i}" for i in range(len(cfg.lora))]
    for name, adapter in zip(names, cfg.lora):
        folder, weight_name = lora_location(adapter)
        pipe.load_lora_weights(folder, weight_name=weight_name, adapter_name=name)
    pipe.set_adapters(names, adapter_weights=[adapter.scale for adapter in cfg.lora])
    if cfg.fuse_lora:
        pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipe.unload_lora_weights()


def lora_location(adapter) -> tuple[str, str | None]:
    """(folder or hub id, weights file name) as `load_lora_weights` takes them; a file path is split."""
    if os.path.isfile(adapter.path):
        return os.path.dirname(adapter.path), os.path.basename(adapter.path)
    return adapter.path, adapter.weight_name


def lora_record(cfg: EditConfig) -> list[dict[str, Any]]:
    """What the manifest records of each adapter: path, weights file, scale and the file's sha256 (for a hub id,
    of the file in the local cache after loading)."""
    from huggingface_hub import try_to_load_from_cache

    from shards.files import sha256_file

    records = []
    for adapter in cfg.lora:
        folder, weight_name = lora_location(adapter)
        name = weight_name or "pytorch_lora_weights.safetensors"
        local = os.path.join(folder, name) if os.path.isdir(folder) else try_to_load_from_cache(folder, name)
        records.append({"path": adapter.path, "weight_name": weight_name, "scale": adapter.scale,
                        "sha256": sha256_file(local) if isinstance(local, str) and os.path.isfile(local) else None})
    return records


def _load_component(cfg: EditConfig, name: str, entry: list[str], dtype: torch.dtype, device: torch.device):
    library, class_name = entry
    cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
    # diffusers names the dtype torch_dtype; transformers 4.57 warns on torch_dtype and takes dtype.
    dtype_kwarg = {"torch_dtype": dtype} if library == "diffusers" else {"dtype": dtype}
    return cls.from_pretrained(cfg.model, subfolder=name, device_map={"": str(device)}, use_safetensors=True,
                               trust_remote_code=cfg.trust_remote_code, **dtype_kwarg).eval()


def edit_image(pipe, cfg: EditConfig, image: Image.Image, prompt: str, seed: int,
               on_step: Callable[[int], None] = lambda step: None) -> np.ndarray:
    """Edit one image with the configured settings; HWC float pixels in [0, 1].

    A CPU generator draws the same noise on any device, so an image depends only on its seed. With
    `speed.batched_cfg` (and CFG on), the stage's own loop runs both CFG passes as one batch.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    cfg_on = cfg.true_cfg_scale > 1 and cfg.negative_prompt is not None
    if cfg.speed.batched_cfg and cfg_on:
        return edit_plus(pipe, image, prompt, cfg.negative_prompt, cfg.true_cfg_scale, cfg.num_inference_steps,
                         generator, cfg.height, cfg.width, batched=True, on_step=on_step)

    def on_step_end(_pipe, step, _timestep, callback_kwargs):
        on_step(step)
        return callback_kwargs

    return family(cfg.pipeline).edit(pipe, cfg, image, prompt, generator, on_step_end)


def to_uint8(pixels: np.ndarray, what: str) -> torch.Tensor:
    """HWC float pixels in [0, 1] as an HWC uint8 tensor, as diffusers' `numpy_to_pil` rounds them.

    Raises:
        RuntimeError: naming `what` if any pixel is not finite (instead of saving a black or noise image).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise RuntimeError(f"{what}: the pipeline produced non-finite pixels")
    return torch.from_numpy((pixels * 255.0).round().clip(0, 255).astype(np.uint8))


def edit_sample(pipe, cfg: EditConfig, sample: Sample, dataset_root: str, seed: int, step_bar) -> torch.Tensor:
    """Edit one sample and return the image as an HWC uint8 RGB tensor.

    Raises:
        RuntimeError: if the pipeline returns non-finite pixels.
    """
    image = open_image(os.path.join(dataset_root, sample.image))
    step_bar.reset(total=cfg.num_inference_steps)
    pixels = edit_image(pipe, cfg, image, sample.instruction, seed, on_step=lambda step: step_bar.update(1))
    return to_uint8(pixels, f"sample '{sample.id}' (dtype {cfg.dtype}, {cfg.num_inference_steps} steps)")


def manifest_entry(sample: Sample, seed: int, image_sha256: str, image: torch.Tensor,
                   seconds: float) -> dict[str, Any]:
    """The manifest's record of one edited sample (shard, key and pixel digest are added by the shard writer).

    `image_sha256` is the original image file's digest: the score stage checks it before showing the original
    to the judge, and a resumed run refuses to mix edits of an image that has since changed.
    """
    height, width, _ = image.shape
    return {
        "id": sample.id, "category": sample.category, "instruction": sample.instruction,
        "description": sample.description, "image": sample.image, "image_sha256": image_sha256,
        "extra": sample.extra, "seed": seed, "height": int(height), "width": int(width),
        "edit_seconds": round(seconds, 3),
    }

"""Qwen-Image-2.1 (QwenImage21Pipeline): Qwen3-VL reads the prompt and the image, a single-stream transformer
denoises 64-channel latents of an RGBA VAE. Runs in the edit-tf5 environment (diffusers 0.42.1, transformers 5).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shards.config import EditConfig

WEIGHTED = ("transformer", "text_encoder", "vae")
BUILDS = "edit_stage.families.qwen21_build"


def edit(pipe, cfg: EditConfig, image: Image.Image, prompt: str, generator, on_step_end) -> np.ndarray:
    """One edit; the pipeline has no guidance_scale (true CFG only, with a negative prompt). It resizes the input
    to `output_resolution`**2 pixels of area at the input's aspect ratio, and the output takes that size unless
    height/width are set."""
    options = {k: v for k, v in (("height", cfg.height), ("width", cfg.width),
                                 ("output_resolution", cfg.output_resolution)) if v is not None}
    result = pipe(image=image, prompt=prompt, negative_prompt=cfg.negative_prompt, true_cfg_scale=cfg.true_cfg_scale,
                  num_inference_steps=cfg.num_inference_steps, generator=generator, output_type="np",
                  callback_on_step_end=on_step_end, **options)
    return rgba_to_rgb(np.asarray(result.images[0], dtype=np.float32))


def rgba_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """The pipeline's RGBA output (its VAE has four channels) composited over white: the pipeline shows an RGBA
    input to its vision encoder that way, as the checkpoint was trained."""
    if pixels.shape[-1] != 4:
        raise ValueError(f"QwenImage21Pipeline returned {pixels.shape[-1]} channels, expected RGBA (4)")
    alpha = pixels[..., 3:]
    return pixels[..., :3] * alpha + (1.0 - alpha)


def model_card(height: int, width: int) -> tuple[dict, dict]:
    """The model card's call for the benchmark's bare call at this size (no guidance of any kind), working at the
    size's own area, and the same as edit settings."""
    side = round((height * width) ** 0.5)
    return dict(output_resolution=side), dict(true_cfg_scale=1.0, output_resolution=side)

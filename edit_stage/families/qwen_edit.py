"""Qwen-Image-Edit (QwenImageEditPipeline) and its Plus variant (-2509/-2511): Qwen2.5-VL reads the prompt and the
image, an MMDiT denoises; true CFG is a second transformer pass per step. Runs in the edit environment
(transformers 4.57 + diffusers 0.39: with transformers 5 the text encoder silently loses the image positions,
diffusers #14194).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shards.config import EditConfig

WEIGHTED = ("transformer", "text_encoder", "vae")
BUILDS = "edit_stage.families.qwen_edit_build"


def edit(pipe, cfg: EditConfig, image: Image.Image, prompt: str, generator, on_step_end) -> np.ndarray:
    """One edit as the model card calls it; the output size follows the input image unless height/width are set."""
    sizes = {k: v for k, v in (("height", cfg.height), ("width", cfg.width)) if v is not None}
    result = pipe(image=image, prompt=prompt, negative_prompt=cfg.negative_prompt, true_cfg_scale=cfg.true_cfg_scale,
                  num_inference_steps=cfg.num_inference_steps, generator=generator, output_type="np",
                  callback_on_step_end=on_step_end, **sizes)
    return np.asarray(result.images[0], dtype=np.float32)


def model_card(height: int, width: int) -> tuple[dict, dict]:
    """The model card's call for the benchmark's bare call at this size (true CFG 4.0 with negative prompt " ";
    `guidance_scale` is ignored by the pipeline, passed as the card does), and the same as edit settings."""
    return (dict(negative_prompt=" ", true_cfg_scale=4.0, guidance_scale=1.0),
            dict(negative_prompt=" ", true_cfg_scale=4.0))

"""FLUX.1 Kontext [dev] (FluxKontextPipeline): CLIP-L and T5-XXL read the prompt, the input image's latents join
the sequence of a guidance-distilled MMDiT. Runs in the edit-tf5 environment (diffusers 0.42.1, transformers 5).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shards.config import EditConfig

WEIGHTED = ("transformer", "text_encoder", "text_encoder_2", "vae")
BUILDS = "edit_stage.families.flux_kontext_build"
SIZE_MULTIPLE = 16             # the VAE's 8x and the transformer's 2x2 packing


def edit(pipe, cfg: EditConfig, image: Image.Image, prompt: str, generator, on_step_end) -> np.ndarray:
    """One edit with FLUX's distilled guidance (and true CFG when configured). The output takes the size the
    pipeline gives the input image unless height/width are set."""
    auto_resize = cfg.auto_resize is not False
    height, width = output_size(image, cfg.height, cfg.width, auto_resize)
    options = {"max_sequence_length": cfg.max_sequence_length} if cfg.max_sequence_length is not None else {}
    # max_area = height * width: otherwise the pipeline rescales the requested size to its 1 MP default area.
    result = pipe(image=image, prompt=prompt, negative_prompt=cfg.negative_prompt, true_cfg_scale=cfg.true_cfg_scale,
                  guidance_scale=cfg.guidance_scale, num_inference_steps=cfg.num_inference_steps, height=height,
                  width=width, max_area=height * width, _auto_resize=auto_resize, generator=generator,
                  output_type="np", callback_on_step_end=on_step_end, **options)
    return np.asarray(result.images[0], dtype=np.float32)


def output_size(image: Image.Image, height: int | None, width: int | None, auto_resize: bool,
                resolutions: list[tuple[int, int]] | None = None) -> tuple[int, int]:
    """(height, width) of the edit: as configured, else the size the pipeline resizes the input to (the nearest of
    Kontext's preferred (width, height) `resolutions` by aspect ratio, by default diffusers' list; or with
    `auto_resize` off its own size), as in BFL's reference code, where the edit has its input's size. The
    pipeline's own default would be 1024x1024 whatever the input."""
    if height is not None and width is not None:
        return height, width
    if resolutions is None:
        from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS as resolutions
    image_width, image_height = image.size
    if auto_resize:
        aspect = image_width / image_height
        _, image_width, image_height = min((abs(aspect - w / h), w, h) for w, h in resolutions)
    height = height or max(image_height // SIZE_MULTIPLE * SIZE_MULTIPLE, SIZE_MULTIPLE)
    width = width or max(image_width // SIZE_MULTIPLE * SIZE_MULTIPLE, SIZE_MULTIPLE)
    return height, width


def model_card(height: int, width: int) -> tuple[dict, dict]:
    """The model card's call for the benchmark's bare call at this size (distilled guidance 2.5, no true CFG), the
    input kept at its drawn size (at 1024x1024 the card's resize changes nothing), and the same as edit settings."""
    return (dict(guidance_scale=2.5, max_area=height * width, _auto_resize=False),
            dict(true_cfg_scale=1.0, guidance_scale=2.5, auto_resize=False))

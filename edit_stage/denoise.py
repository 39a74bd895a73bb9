"""The stage's own denoising loop for QwenImageEditPlusPipeline, which can run true CFG as one batch of two.

diffusers 0.39's `QwenImageEditPlusPipeline.__call__` runs the conditional and the unconditional transformer pass
one after the other. This loop does what that call does for one image and one prompt, step for step and with the
pipeline's own methods (prompt encoding, latents, scheduler, VAE), in the same bf16 operations, so that with
`batched=False` its images are bit-identical to the bare call (tests/test_speed.py holds that). With
`batched=True` both passes go through the transformer as one batch: the two prompts' embeddings are right-padded
to one length and masked, which the transformer honours (its text positions start after the image positions for
every row, so padding moves no real token). The images then equal the bare call's within bf16 rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import (CONDITION_IMAGE_SIZE, VAE_IMAGE_SIZE,
                                                                        calculate_dimensions, calculate_shift,
                                                                        retrieve_timesteps)
from PIL import Image


@torch.inference_mode()
def edit_plus(pipe, image: Image.Image, prompt: str, negative_prompt: str, true_cfg_scale: float, steps: int,
              generator: torch.Generator, height: int | None = None, width: int | None = None, *,
              batched: bool, on_step: Callable[[int], None] = lambda step: None) -> np.ndarray:
    """One edit with true CFG, as `pipe(image=..., output_type="np")` makes it; returns HWC float pixels in [0, 1]."""
    device = pipe._execution_device
    calculated_width, calculated_height = calculate_dimensions(1024 * 1024, image.size[0] / image.size[1])
    multiple_of = pipe.vae_scale_factor * 2
    width = (width or calculated_width) // multiple_of * multiple_of
    height = (height or calculated_height) // multiple_of * multiple_of
    condition_width, condition_height = calculate_dimensions(CONDITION_IMAGE_SIZE, image.size[0] / image.size[1])
    vae_width, vae_height = calculate_dimensions(VAE_IMAGE_SIZE, image.size[0] / image.size[1])
    condition_images = [pipe.image_processor.resize(image, condition_height, condition_width)]
    vae_images = [pipe.image_processor.preprocess(image, vae_height, vae_width).unsqueeze(2)]

    embeds, masks = zip(*(pipe.encode_prompt(image=condition_images, prompt=text, device=device)
                          for text in (prompt, negative_prompt)))
    latents, image_latents = pipe.prepare_latents(vae_images, 1, pipe.transformer.config.in_channels // 4, height,
                                                  width, embeds[0].dtype, device, generator, None)
    scale = pipe.vae_scale_factor * 2
    img_shapes = [[(1, height // scale, width // scale), (1, vae_height // scale, vae_width // scale)]]
    sigmas = np.linspace(1.0, 1 / steps, steps)
    config = pipe.scheduler.config
    mu = calculate_shift(latents.shape[1], config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, device, sigmas=sigmas, mu=mu)
    predict = _batched_predictor(pipe, embeds, masks, img_shapes) if batched else \
        _sequential_predictor(pipe, embeds, masks, img_shapes)

    pipe.scheduler.set_begin_index(0)
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents, image_latents], dim=1)
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        noise_pred, neg_noise_pred = (p[:, : latents.size(1)] for p in predict(model_input, timestep / 1000))
        comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
        cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
        noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
        latents = pipe.scheduler.step(comb_pred * (cond_norm / noise_norm), t, latents, return_dict=False)[0]
        on_step(i)
    return _decode(pipe, latents, height, width)


def _sequential_predictor(pipe, embeds, masks, img_shapes):
    """The bare call's two transformer passes, in its order."""
    def predict(model_input, timestep):
        return [pipe.transformer(hidden_states=model_input, timestep=timestep, guidance=None,
                                 encoder_hidden_states_mask=mask, encoder_hidden_states=embed,
                                 img_shapes=img_shapes, attention_kwargs={}, return_dict=False)[0]
                for embed, mask in zip(embeds, masks)]
    return predict


def _batched_predictor(pipe, embeds, masks, img_shapes):
    """Both passes as one batch: embeddings right-padded to the longer prompt, a mask marking the real tokens."""
    length = max(e.shape[1] for e in embeds)
    padded = torch.cat([torch.nn.functional.pad(e, (0, 0, 0, length - e.shape[1])) for e in embeds])
    mask = torch.zeros(len(embeds), length, dtype=torch.long, device=padded.device)
    for row, (embed, given) in enumerate(zip(embeds, masks)):
        mask[row, : embed.shape[1]] = 1 if given is None else given[0]

    def predict(model_input, timestep):
        out = pipe.transformer(hidden_states=torch.cat([model_input] * 2), timestep=timestep.expand(2),
                               guidance=None, encoder_hidden_states_mask=mask, encoder_hidden_states=padded,
                               img_shapes=img_shapes * 2, attention_kwargs={}, return_dict=False)[0]
        return out[:1], out[1:]
    return predict


def _decode(pipe, latents: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The pipeline's own decode and post-processing, to HWC float pixels."""
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor).to(pipe.vae.dtype)
    z_dim = pipe.vae.config.z_dim
    latents_mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    latents_std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device,
                                                                                               latents.dtype)
    image = pipe.vae.decode(latents / latents_std + latents_mean, return_dict=False)[0][:, :, 0]
    return pipe.image_processor.postprocess(image, output_type="np")[0]

"""The edit stage's speed options (`edit.speed`), applied to a loaded pipeline.

Each gives the bare diffusers call's images within bf16 rounding (held in tests/test_speed.py, measured by
`python -m edit_stage.bench`). `batched_cfg` changes the denoising loop itself and lives in `edit_stage.denoise`;
the others change how components compute and are applied here, once, after loading.
"""

from __future__ import annotations

import dataclasses
import types

import torch
import torch.nn.functional as F

from shards.config import ConfigError, EditConfig, EditSpeed

# How far the fast path's images may be from the bare call's, in 0-255 pixel units over all pixels of all images,
# and as PSNR: held by tests/test_speed.py on the CPU and reported by the benchmark on any device. bf16 differences
# of one unit in the last place grow along the denoising trajectory; these bounds were set from the CPU runs in the
# README's Performance section, where the largest seen was well inside them.
TOLERANCE = {"max_abs_diff": 16, "psnr_db": 35.0}
# What `python -m edit_stage.bench` switches on for "every speed option that applies on the device".
ATTENTION_BACKEND_FOR = {"cuda": "_native_cudnn", "cpu": None}


def check_speed(cfg: EditConfig, source: str) -> None:
    """Refuse, before any model loads, a speed option this environment cannot run (one that does not apply to
    the editor family is refused when the config loads).

    Raises:
        ConfigError: naming the key and why (an unknown attention backend, or one whose package is missing).
    """
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    name = cfg.speed.attention_backend
    if name is not None:
        names = [b.value for b in AttentionBackendName]
        if name not in names:
            raise ConfigError(f"{source}: edit.speed.attention_backend: '{name}' is not a diffusers attention "
                              f"backend (one of {', '.join(names)})")
        if name.endswith("_hub"):
            raise ConfigError(f"{source}: edit.speed.attention_backend: '{name}' downloads its kernels from the hub "
                              "at run time; choose a backend installed in the edit environment")
        try:
            _check_attention_backend_requirements(AttentionBackendName(name))
        except (RuntimeError, ImportError) as e:
            raise ConfigError(f"{source}: edit.speed.attention_backend: {e}") from None


def applied_options(speed: EditSpeed) -> dict[str, object]:
    """The options that are on, by name: what a manifest or benchmark lists."""
    return {f.name: getattr(speed, f.name) for f in dataclasses.fields(speed) if getattr(speed, f.name)}


def options_for_device(device: torch.device) -> EditSpeed:
    """Every option that runs on `device`: what the benchmark's fast path measures."""
    return EditSpeed(attention_backend=ATTENTION_BACKEND_FOR.get(device.type), compile=True, batched_cfg=True,
                     linear_patch_embed=True)


def apply_speed(pipe, speed: EditSpeed) -> None:
    """Apply the component-level options to a loaded pipeline, in place."""
    if speed.linear_patch_embed:
        patch_embed = vision_tower(pipe.text_encoder).patch_embed
        patch_embed.forward = types.MethodType(patch_embed_as_matmul, patch_embed)
    if speed.attention_backend is not None:
        pipe.transformer.set_attention_backend(speed.attention_backend)
    if speed.compile:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)


def vision_tower(text_encoder) -> torch.nn.Module:
    """The text encoder's vision tower: Qwen2.5-VL (transformers 4.57) has it at `.visual`, Qwen3-VL (transformers
    5) at `.model.visual`."""
    return text_encoder.visual if hasattr(text_encoder, "visual") else text_encoder.model.visual


def patch_embed_as_matmul(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL's and Qwen3-VL's patch embedding: a Conv3d (Qwen2.5-VL's without bias) whose kernel covers each
    whole flattened patch, which is exactly a matmul with the kernel flattened in the same order (vLLM does the
    same on torch >= 2.9)."""
    weight = self.proj.weight
    return F.linear(hidden_states.to(weight.dtype), weight.reshape(weight.shape[0], -1), self.proj.bias)

"""The editor families `edit.pipeline` names: each one's environment, the settings that exist only for some
families, and its size rules. The config checks, the launcher (which environment to build) and the edit stage
read them here. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One editor family: a diffusers pipeline class and what a run of it needs."""

    pipeline: str
    """The diffusers pipeline class, as `edit.pipeline` and the checkpoint's model_index.json name it."""
    extra: str
    """The pyproject extra its environment installs (`.envs/<extra>` unless the config says otherwise)."""
    settings: tuple[str, ...]
    """The family-only settings of `EditConfig` (in `FAMILY_SETTINGS`) that this family takes."""
    size_multiple: int
    """`edit.height`/`edit.width` must be a multiple of this (the pipeline floors any other size)."""
    min_steps: int
    """The fewest denoising steps that give finite images with the released scheduler config."""
    speed: tuple[str, ...] = ("attention_backend", "compile")
    """The `edit.speed` options that apply to it."""


# diffusers' Qwen-Image-Edit pipelines need transformers 4.x (diffusers #14194); Qwen-Image-2.1 (its text encoder is
# Qwen3-VL) and FLUX.1 Kontext run on diffusers 0.42.1, which needs huggingface-hub >= 1.32 and so transformers 5.x:
# the two newer families share one environment, which installs exactly the same packages for both.
FAMILIES = {family.pipeline: family for family in (
    Family(pipeline="QwenImageEditPipeline", extra="edit", settings=(), size_multiple=16, min_steps=2,
           speed=("attention_backend", "compile", "linear_patch_embed")),
    # batched_cfg: only this family has the stage's own denoising loop (edit_stage.denoise).
    Family(pipeline="QwenImageEditPlusPipeline", extra="edit", settings=(), size_multiple=16, min_steps=2,
           speed=("attention_backend", "compile", "linear_patch_embed", "batched_cfg")),
    Family(pipeline="QwenImage21Pipeline", extra="edit-tf5", settings=("output_resolution",), size_multiple=32,
           min_steps=2, speed=("attention_backend", "compile", "linear_patch_embed")),
    # FLUX has no vision tower (CLIP and T5 read text only), so no patch embedding to speed up.
    Family(pipeline="FluxKontextPipeline", extra="edit-tf5",
           settings=("guidance_scale", "max_sequence_length", "auto_resize"), size_multiple=16, min_steps=1),
)}

# Each family-only setting, with what the other families have nearest to it (None: nothing like it).
FAMILY_SETTINGS = {
    "guidance_scale": ("FLUX's distilled guidance", "true_cfg_scale"),
    "max_sequence_length": ("the T5 prompt length", None),
    "auto_resize": ("Kontext's resize of the input to its preferred resolutions", None),
    "output_resolution": ("Qwen-Image-2.1's working resolution", "height"),
}


def family_problem(pipeline: str, key: str) -> str | None:
    """Why the family-only setting `key` is refused for `pipeline`, with the nearest valid key; None if it applies."""
    family = FAMILIES[pipeline]
    if key in family.settings:
        return None
    what, nearest = FAMILY_SETTINGS[key]
    owners = ", ".join(f.pipeline for f in FAMILIES.values() if key in f.settings)
    hint = f"; did you mean '{nearest}'?" if nearest else ""
    return f"{pipeline} has no {key} ({what}: only {owners}){hint}"

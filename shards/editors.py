"""The editor families `edit.pipeline` names: each one's environment, the settings that exist only for some
families, and its size rules; `check_family` holds a config to them. The config checks, the launcher (which
environment to build) and the edit stage read them here. Standard library only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shards.typed_data import ConfigError, where


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


def check_family(config) -> None:
    """The editor family's own rules for `config` (a RunConfig): its settings only, its step and size limits, its
    speed options.

    Raises:
        ConfigError: naming the file, the key and, for another family's setting, the nearest valid key.
    """
    src, edit = config.source, config.edit
    family = FAMILIES[edit.pipeline]
    if edit.num_inference_steps < family.min_steps:
        raise ConfigError(f"{where(src, 'edit.num_inference_steps')}: must be at least {family.min_steps} for "
                          f"{edit.pipeline} (fewer steps give NaN images with its scheduler)")
    for key in FAMILY_SETTINGS:
        problem = family_problem(edit.pipeline, key) if getattr(edit, key) is not None else None
        if problem:
            raise ConfigError(f"{where(src, 'edit.' + key)}: {problem}")
    if "guidance_scale" in family.settings and edit.guidance_scale is None:
        raise ConfigError(f"{where(src, 'edit.guidance_scale')}: required for {edit.pipeline}: its distilled "
                          "guidance, an input of the transformer (the model card uses 2.5)")
    for key in ("height", "width"):
        value, step = getattr(edit, key), family.size_multiple
        if value is not None and (value <= 0 or value % step):
            raise ConfigError(f"{where(src, 'edit.' + key)}: must be a positive multiple of {step} for "
                              f"{edit.pipeline}, got {value}")
    positive = {"output_resolution": edit.output_resolution, "max_sequence_length": edit.max_sequence_length}
    for key, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"{where(src, 'edit.' + key)}: must be at least 1, got {value}")
    for option, value in dataclasses.asdict(edit.speed).items():
        if value and option not in family.speed:
            raise ConfigError(f"{where(src, 'edit.speed.' + option)}: does not apply to {edit.pipeline} (its "
                              f"options: {', '.join(family.speed)})")

"""The editor families of `edit.pipeline` (`shards.editors`), one module each: which components hold weights, and
the pipeline call that edits one image.

- `qwen_edit`: QwenImageEditPipeline and QwenImageEditPlusPipeline (the edit environment, diffusers 0.39);
- `qwen21`: QwenImage21Pipeline (Qwen-Image-2.1; edit-tf5, diffusers 0.42.1 + transformers 5);
- `flux_kontext`: FluxKontextPipeline (FLUX.1 Kontext [dev]; edit-tf5).

Each module has `WEIGHTED` (the components loaded one by one straight onto the rank's device), `edit(pipe, cfg,
image, prompt, generator, on_step_end)` (HWC float RGB pixels in [0, 1]), `model_card(height, width)` (the
model card's call, for the benchmark's bare call) and `BUILDS`, the module that builds its random-weight versions
(`build_tiny`, `build_tiny_lora`, `build_random`, `ARCH`: the demo, the tests and the benchmark; `parameter_count`
counts a build's weights). A module is imported only for its own family: the others' pipeline classes need another
diffusers.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {"QwenImageEditPipeline": "qwen_edit", "QwenImageEditPlusPipeline": "qwen_edit",
           "QwenImage21Pipeline": "qwen21", "FluxKontextPipeline": "flux_kontext"}


def family(pipeline: str) -> ModuleType:
    """The module of the family whose pipeline class is `pipeline`."""
    return importlib.import_module(f"{__name__}.{MODULES[pipeline]}")


def builds(pipeline: str) -> ModuleType:
    """The module that builds random-weight versions of `pipeline` (tiny, its LoRA, the real architecture)."""
    return importlib.import_module(family(pipeline).BUILDS)


def parameter_count(pipe, pipeline: str) -> dict[str, int]:
    """Parameters per weighted component (the family's `WEIGHTED`) of a pipeline of class `pipeline`."""
    return {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in family(pipeline).WEIGHTED}

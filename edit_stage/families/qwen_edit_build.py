"""Random-weight builds of Qwen-Image-Edit, under the names every family's builds have: the tiny pipeline and its
LoRA (`edit_stage.tiny`), the released -2511 architecture at real width (`edit_stage.real_arch`)."""

from edit_stage.real_arch import ARCH
from edit_stage.real_arch import build_random_pipeline as build_random
from edit_stage.tiny import build_tiny, build_tiny_lora

__all__ = ["ARCH", "build_random", "build_tiny", "build_tiny_lora"]

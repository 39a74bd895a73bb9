"""The real Qwen-Image-Edit-2511 architecture with random weights, built on the target device, for the benchmark.

The component configs are the published ones (`configs/arch/qwen-image-edit-2511/`); `layers` keeps the first N
layers of each stack (transformer blocks, text-encoder layers, vision blocks) at their real widths, so the same code
builds the full 20 B + 8 B model on a GPU or a few-GB slice of it on a CPU. Weights are created directly on the
device in the target dtype: nothing is downloaded, and no full random initialisation happens on the host. Only the
tokenizer is not the real one (no tokenizer files ship with the configs): the tiny byte-level BPE of `tiny.py`,
its special-token ids written into the text encoder's config, in the real vocabulary-sized embedding.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import torch
from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline,
                       QwenImageTransformer2DModel)
from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorFast,
                          Qwen2VLProcessor, Qwen2VLVideoProcessor)

from edit_stage.tiny import build_tokenizers
from shards.config import REPO_ROOT
from shards.tiny.tokenizer import QWEN_SPECIAL_TOKENS

ARCH = os.path.join(REPO_ROOT, "configs", "arch", "qwen-image-edit-2511")


def _config(component: str, name: str = "config.json") -> dict:
    with open(os.path.join(ARCH, component, name), encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Parameters created inside are `dtype` from the start (diffusers' `from_config` ignores `torch_dtype`)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def text_encoder_config(token_ids: dict[str, int], layers: int | None) -> Qwen2_5_VLConfig:
    """The published Qwen2.5-VL-7B config, with the tokenizer's special-token ids and optionally fewer layers."""
    raw = _config("text_encoder")
    special = dict(bos_token_id=token_ids["<|endoftext|>"], eos_token_id=token_ids["<|im_end|>"])
    raw.update(special, image_token_id=token_ids["<|image_pad|>"], video_token_id=token_ids["<|video_pad|>"],
               vision_start_token_id=token_ids["<|vision_start|>"], vision_end_token_id=token_ids["<|vision_end|>"],
               vision_token_id=token_ids["<|vision_pad|>"])
    text = {**raw["text_config"], **special}
    if layers:
        # The 4.57 format holds the text settings twice, at the top and in text_config: both must shrink.
        shrunk = dict(num_hidden_layers=layers, max_window_layers=layers)
        raw.update(shrunk)
        text.update(shrunk, layer_types=text["layer_types"][:layers])
        raw["vision_config"] = {**raw["vision_config"], "depth": layers,
                                "fullatt_block_indexes": [layers - 1]}  # must index a real block
    raw["text_config"] = text
    return Qwen2_5_VLConfig(**raw)


def build_random_pipeline(device: torch.device, dtype: torch.dtype, layers: int | None = None,
                          seed: int = 0) -> QwenImageEditPlusPipeline:
    """QwenImageEditPlusPipeline of the 2511 architecture with random weights, every weight made on `device`.

    Args:
        layers: Keep this many layers of each stack (None: all, the full 20.4 B + 8.3 B parameters).
    """
    slow_tokenizer, fast_tokenizer = build_tokenizers()
    token_ids = dict(zip(QWEN_SPECIAL_TOKENS, fast_tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))))
    transformer_config = _config("transformer")
    if layers:
        transformer_config["num_layers"] = layers
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        transformer = QwenImageTransformer2DModel.from_config(transformer_config).eval()
        vae = AutoencoderKLQwenImage.from_config(_config("vae")).eval()
    with torch.device(device):
        text_encoder = Qwen2_5_VLForConditionalGeneration._from_config(
            text_encoder_config(token_ids, layers), dtype=dtype).eval()
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessorFast(**_config("processor",
                                                                                      "preprocessor_config.json")),
                                 tokenizer=fast_tokenizer, video_processor=Qwen2VLVideoProcessor())
    return QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(_config("scheduler", "scheduler_config.json")),
        vae=vae, text_encoder=text_encoder, tokenizer=slow_tokenizer, processor=processor, transformer=transformer)


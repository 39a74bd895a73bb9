"""The real Qwen3-VL-30B-A3B judge architecture with random weights, built on the target device, for the benchmark.

The config is the published one (`configs/arch/qwen3-vl-30b-a3b/`, 31.07 B parameters, 128 experts of which 8
are active); `layers` keeps the first N text and vision layers at their real widths. Weights are created on the
device in the target dtype. The tokenizer is the tiny byte-level BPE of `tiny.py` with the real chat template,
its special-token ids written into the config, in the real vocabulary-sized embedding.
"""

from __future__ import annotations

import json
import os

import torch
from transformers import (Qwen2VLImageProcessor, Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor,
                          Qwen3VLVideoProcessor)

from score_stage.tiny import CHAT_TEMPLATE, build_tokenizer, generation_config
from shards.config import REPO_ROOT

ARCH = os.path.join(REPO_ROOT, "configs", "arch", "qwen3-vl-30b-a3b")


def _config(name: str) -> dict:
    with open(os.path.join(ARCH, name), encoding="utf-8") as f:
        return json.load(f)


def judge_config(tokenizer, layers: int | None) -> Qwen3VLMoeConfig:
    """The published config with the tokenizer's special-token ids and optionally fewer layers."""
    raw, ids = _config("config.json"), tokenizer.convert_tokens_to_ids
    raw.update(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
               vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    text = {**raw["text_config"], "bos_token_id": ids("<|endoftext|>"), "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = dict(raw["vision_config"])
    if layers:
        text["num_hidden_layers"] = layers
        # Deepstack taps must name real vision blocks and be no more than the text layers they feed.
        vision.update(depth=layers, deepstack_visual_indexes=list(range(min(layers, 3))))
    raw.update(text_config=text, vision_config=vision)
    return Qwen3VLMoeConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})


def build_random_judge(device: torch.device, dtype: torch.dtype, layers: int | None = None, seed: int = 0):
    """(model, processor): Qwen3VLMoeForConditionalGeneration with random weights made on `device`."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3VLMoeForConditionalGeneration._from_config(judge_config(tokenizer, layers), dtype=dtype).eval()
    model.generation_config = generation_config(tokenizer)
    preprocessor = {k: v for k, v in _config("preprocessor_config.json").items()
                    if k not in ("processor_class", "image_processor_type")}
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**preprocessor), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**preprocessor), chat_template=CHAT_TEMPLATE)
    return model, processor

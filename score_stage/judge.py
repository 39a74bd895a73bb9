"""The Qwen3-VL judge: loading it on this rank's device and asking it about a batch of edited images."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from shards.config import CategoryPrompts, ScoreConfig

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def load_judge(cfg: ScoreConfig, device: torch.device) -> tuple[Any, Any]:
    """Model and processor from `cfg.model`, the whole model on this rank's device.

    Never device_map="auto" under torchrun: transformers may switch on tensor parallelism from WORLD_SIZE
    (transformers #38771), and the system this replaces left five of six GPUs idle that way.
    """
    model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=DTYPES[cfg.dtype]).to(device).eval()
    processor = AutoProcessor.from_pretrained(cfg.model)
    # Decoder-only batches are padded on the left, so every row's next token follows its own prompt.
    processor.tokenizer.padding_side = "left"
    return model, processor


def template_fields(entry: dict[str, Any]) -> dict[str, str]:
    """The values a user prompt template may use (a missing description becomes an empty string)."""
    return {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
            "description": entry.get("description") or ""}


def conversation(prompts: CategoryPrompts, entry: dict[str, Any], image: Image.Image) -> list[dict[str, Any]]:
    """The chat for one sample; the system content is a list of text parts, as Qwen3-VL's template requires."""
    user = prompts.user_prompt_template.format(**template_fields(entry))
    return [
        {"role": "system", "content": [{"type": "text", "text": prompts.system_prompt}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": user}]},
    ]


@torch.inference_mode()
def generate_answers(model, processor, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers to a batch of conversations, one string each (the prompt not included)."""
    inputs = processor.apply_chat_template(
        conversations, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt",
        # transformers 5.x reads padding options only inside processor_kwargs; outside it warns, and
        # padding=True alone pads on the right.
        processor_kwargs={"padding": True, "padding_side": "left"},
    ).to(model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

"""The Qwen3-VL judge: loading it on this rank's device and asking it about a batch of edited images."""

from __future__ import annotations

from typing import Any, Callable, Iterator

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
    # use_safetensors=True: never fall back to pickled .bin weights.
    model = AutoModelForImageTextToText.from_pretrained(
        cfg.model, dtype=DTYPES[cfg.dtype], use_safetensors=True, trust_remote_code=cfg.trust_remote_code,
    ).to(device).eval()
    processor = AutoProcessor.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
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


def batches_with_backoff(items: list[Any], size: int, ask: Callable[[list[Any]], list[Any]],
                         on_retry: Callable[[int, int], None]) -> Iterator[tuple[list[Any], list[Any]]]:
    """Yield (batch, ask(batch)) over `items` in order, in batches of `size`.

    A batch that runs out of GPU memory is asked again at half its size, down to one; the smaller size is kept
    for the rest, since the next batch would most likely not fit either. `on_retry(old, new)` is told each time.

    Raises:
        torch.OutOfMemoryError: if a single item does not fit.
    """
    start = 0
    while start < len(items):
        batch = items[start: start + size]
        try:
            answers = ask(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            answers = None
        if answers is None:
            # Outside the except block, so the exception's frames (and the tensors they hold) are already freed.
            size = len(batch) // 2
            on_retry(len(batch), size)
            torch.cuda.empty_cache()
            continue
        yield batch, answers
        start += len(batch)

"""The chat a judge is asked for one (sample, dimension) query, whichever judge answers it: the dimension's system
prompt, its user prompt filled with the sample's fields, and its pictures (the edited image, after the original
when the dimension asks), optionally with the answer begun by the answer prefix."""

from __future__ import annotations

from typing import Any

from PIL import Image

from shards.config import Dimension

PICTURE_LABELS = ("First picture (the original image):\n", "\nSecond picture (the edited image):\n")


def template_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The values a user prompt template may use (a missing description becomes an empty string; the sample's
    other fields are under `extra`, checked when the dataset loads)."""
    return {"id": entry["id"], "category": entry["category"], "instruction": entry["instruction"],
            "description": entry.get("description") or "", "extra": entry.get("extra") or {}}


def conversation(dimension: Dimension, entry: dict[str, Any], images: list[Image.Image],
                 answer_prefix: str | None = None) -> list[dict[str, Any]]:
    """The chat for one query. Two images are labelled as the first (original) and second (edited) picture.

    The system content is a list of text parts, as Qwen3-VL's template requires. With `answer_prefix`, the
    assistant's answer is begun with it, to be continued by the model.
    """
    user = dimension.user_prompt_template.format(**template_fields(entry))
    if len(images) == 2:
        content = [part for label, image in zip(PICTURE_LABELS, images)
                   for part in ({"type": "text", "text": label}, {"type": "image", "image": image})]
        content.append({"type": "text", "text": "\n" + user})
    else:
        content = [{"type": "image", "image": images[0]}, {"type": "text", "text": user}]
    chat = [{"role": "system", "content": [{"type": "text", "text": dimension.system_prompt}]},
            {"role": "user", "content": content}]
    if answer_prefix is not None:
        chat.append({"role": "assistant", "content": [{"type": "text", "text": answer_prefix}]})
    return chat


def official_chat(text: str, pictures: list[tuple[str | None, Image.Image]]) -> list[dict[str, Any]]:
    """The official protocol's chat: one user message, the prompt first, then each picture after its label (where
    the benchmark labels them), as the benchmarks' scorers send it; no system message."""
    content = [{"type": "text", "text": text}]
    for label, image in pictures:
        content += [{"type": "text", "text": label}] if label else []
        content.append({"type": "image", "image": image})
    return [{"role": "user", "content": content}]

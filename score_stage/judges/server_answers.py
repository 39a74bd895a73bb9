"""What a chat-completions server's answer means for a score: the request body each way of asking needs, and the
score (or why there is none) read from the response. Pure functions over plain data, so each rule is tested
without a server.

Two ways to read an `expected`-mode score from logprobs (`Recipe`):
- `prefilled`: the answer is begun with the answer prefix and continued by the server (vLLM's
  `continue_final_message`): p(digit | prefix) and p(digit | prefix + "1"), the in-process judge's two steps. With
  token ids (vLLM's `/tokenize`) it is one request: the first generated token forced to "1" (a server reports
  logprobs before any bias, so position 0 is the first step and position 1 the second), asking for exactly the ten
  digits' logprobs (`logprob_token_ids`). Without ids it is two requests, the second prefilled with the prefix and
  a "1", each asking for the likeliest `top_logprobs` tokens; a digit not among them counts as 0.
- `written`: the judge writes its answer, and the probabilities are read at the position where the score begins.
  That needs a tokenizer that writes each score 0..10 as one token (OpenAI's do): with one digit per token, the
  1-or-10 split would need the position after a "1" the judge may not have written.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

SCORE_TEXTS = tuple(str(s) for s in range(11))
IDS_PREFIX = "token_id:"         # vLLM's `return_tokens_as_token_ids` writes each token as "token_id:123"


class ServerError(RuntimeError):
    """A server that cannot judge as configured, or stopped answering; the message says what is missing and what
    would work."""


@dataclass(frozen=True)
class Recipe:
    """How this server is asked for an `expected`-mode score (settled by the probe)."""

    way: Literal["prefilled", "written"]
    digit_ids: tuple[int, ...] | None = None
    """The server tokenizer's ids of "0".."9" (`prefilled` with vLLM's `/tokenize`), else None."""
    top_logprobs: int = 20
    """How many of the likeliest tokens to ask for when the digits cannot be named by id."""


def reading(recipe: Recipe | None) -> str | None:
    """How an `expected`-mode score is read from this server, in words, with what changes it (None: `generate`
    mode, read from the text): part of what a run is, since another way gives another measure."""
    if recipe is None:
        return None
    if recipe.digit_ids is not None:
        return "the ten digits' logprobs by token id, after the prefilled answer"
    where = "after the prefilled answer" if recipe.way == "prefilled" else "where the written score begins"
    return f"the likeliest {recipe.top_logprobs} tokens {where}"


def data_url(image: Image.Image) -> str:
    """The image as a PNG data URL: lossless, so the server sees the pixels the in-process judge would."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A chat of `score_stage.chat.conversation` (PIL images in its parts) as OpenAI chat messages."""
    messages = []
    for message in chat:
        parts = [{"type": "image_url", "image_url": {"url": data_url(part["image"])}} if part["type"] == "image"
                 else {"type": "text", "text": part["text"]} for part in message["content"]]
        messages.append({"role": message["role"], "content": parts})
    return messages


def generate_body(model: str, messages: list[dict], max_tokens: int) -> dict[str, Any]:
    """Greedy answer, as the in-process judge's `generate(do_sample=False)`."""
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "seed": 0}


def prefilled_body(model: str, messages: list[dict], recipe: Recipe) -> dict[str, Any]:
    """The request continuing the prefilled answer (the last message): with digit ids, two tokens, the first forced
    to "1", with the digits' logprobs at both positions; without, one token with the likeliest alternatives."""
    body = {"model": model, "messages": messages, "temperature": 0, "seed": 0, "logprobs": True,
            # Top-level fields: vLLM accepts them inside chat_template_kwargs too, but then silently does not
            # continue the answer.
            "continue_final_message": True, "add_generation_prompt": False}
    if recipe.digit_ids is not None:
        return {**body, "max_tokens": 2, "logprob_token_ids": list(recipe.digit_ids),
                "return_tokens_as_token_ids": True, "logit_bias": {str(recipe.digit_ids[1]): 100}}
    return {**body, "max_tokens": 1, "top_logprobs": recipe.top_logprobs}


def written_body(model: str, messages: list[dict], max_tokens: int, top_logprobs: int) -> dict[str, Any]:
    return {**generate_body(model, messages, max_tokens), "logprobs": True, "top_logprobs": top_logprobs}


def not_a_completion(answer: Any) -> str | None:
    """Why a server's answer is not an OpenAI chat completion (a web page, another API's JSON), or None."""
    if not isinstance(answer, dict):
        return f"not JSON: {' '.join(str(answer).split())[:120]!r}"
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return f"no choices in {' '.join(str(answer).split())[:120]}"
    if not isinstance(choices[0].get("message"), dict):
        return f"no message in its first choice: {' '.join(str(choices[0]).split())[:120]}"
    return None


def no_answer(choice: dict[str, Any]) -> str | None:
    """Why a choice holds no answer to read a score from (a content filter, a refusal, nothing written), or None."""
    message = choice.get("message") or {}
    if choice.get("finish_reason") == "content_filter":
        return "the server's content filter blocked the answer"
    if message.get("refusal"):
        return f"the judge refused: {' '.join(str(message['refusal']).split())[:200]}"
    if not (message.get("content") or "").strip() and not (choice.get("logprobs") or {}).get("content"):
        return "the judge's answer was empty"
    return None


def _positions(choice: dict[str, Any]) -> list[dict[str, Any]]:
    return (choice.get("logprobs") or {}).get("content") or []


def _token_id(token: str) -> int | None:
    return int(token[len(IDS_PREFIX):]) if token.startswith(IDS_PREFIX) else None


def digit_probabilities(position: dict[str, Any], recipe: Recipe) -> list[float]:
    """p("0")..p("9") at one position of the answer: by token id where the recipe has them, else by the
    alternatives' text; a digit the server did not report counts as 0."""
    found = [0.0] * 10
    for alternative in position.get("top_logprobs") or []:
        token = alternative["token"]
        if recipe.digit_ids is not None:
            digit = recipe.digit_ids.index(_token_id(token)) if _token_id(token) in recipe.digit_ids else None
        else:
            digit = int(token) if token in SCORE_TEXTS[:10] else None
        if digit is not None:
            found[digit] = max(found[digit], math.exp(alternative["logprob"]))
    return found


def forced_probabilities(choice: dict[str, Any], recipe: Recipe) -> tuple[list[float], list[float]]:
    """(p, q) from one answer whose first token was forced to "1": the digits after the prefix, then after the
    prefix and the "1".

    Raises:
        ServerError: if the answer does not hold the two positions, or its first token is not the forced "1".
    """
    positions = _positions(choice)
    if len(positions) < 2:
        raise ServerError(f"the server returned logprobs for {len(positions)} position(s) of a 2-token answer; "
                          "expected mode needs both")
    if _token_id(positions[0]["token"]) != recipe.digit_ids[1]:
        raise ServerError(f"the server did not force the first token to \"1\" (it wrote {positions[0]['token']}): "
                          "it does not apply logit_bias, and the second position would not follow a 1")
    return digit_probabilities(positions[0], recipe), digit_probabilities(positions[1], recipe)


def first_probabilities(choice: dict[str, Any], recipe: Recipe) -> list[float]:
    """The digits' probabilities at the first position of a one-token answer.

    Raises:
        ServerError: if the answer holds no logprobs.
    """
    positions = _positions(choice)
    if not positions:
        raise ServerError("the server returned no logprobs for the answer's first token")
    return digit_probabilities(positions[0], recipe)


def written_probabilities(choice: dict[str, Any], answer_prefix: str) -> list[float] | None:
    """P(score = s) for s = 0..10 at the position where the written score begins (the token holding the first
    digit right after the last `answer_prefix` that a number follows, spaces or bold marks between, as the text
    parser reads it), from the alternatives whose text, stripped, is a whole score; None when the answer never
    writes the prefix followed by a number."""
    positions = _positions(choice)
    text, starts = "", []
    for position in positions:
        starts.append(len(text))
        text += position["token"]
    found = list(re.finditer(re.escape(answer_prefix.strip()) + r"[\s*]*(\d)", text))
    if not found:
        return None
    digit_at = found[-1].start(1)
    position = next(p for start, p in zip(starts, positions) if start <= digit_at < start + len(p["token"]))
    scores = [0.0] * 11
    for alternative in position.get("top_logprobs") or []:
        if alternative["token"].strip() in SCORE_TEXTS:
            scores[int(alternative["token"].strip())] += math.exp(alternative["logprob"])
    return scores


def usage(response: dict[str, Any]) -> dict[str, int]:
    """Tokens in and out of one request, as the server counts them."""
    used = response.get("usage") or {}
    return {"prompt": int(used.get("prompt_tokens") or 0), "completion": int(used.get("completion_tokens") or 0)}

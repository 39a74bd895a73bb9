"""The Qwen3-VL judge: loading it on this rank's device and asking it about a batch of (sample, dimension) queries.

A query shows the judge a dimension's prompts and images (the edited image, or the original and the edited one)
and reads a score in the configured mode: `generate` lets it write and parses the text; `expected` writes the
answer prefix itself and reads the probabilities of the score's digits (see score_stage.scoring).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import transformers
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessor, LogitsProcessorList

from score_stage.chat import conversation
from score_stage.parsing import extract_score
from score_stage.scoring import expected_score, score_distribution
from shards.config import Dimension, ScoreConfig
from shards.runtime.device import DTYPES


class InProcessJudge:
    """One rank's judge: the model on this rank's device, its processor, and the settings that read a score."""

    def __init__(self, cfg: ScoreConfig, device: torch.device):
        # Never device_map="auto" under torchrun: transformers may switch on tensor parallelism from WORLD_SIZE
        # (transformers #38771), and the system this replaces left five of six GPUs idle that way. The single-device
        # map reads the memory-mapped safetensors straight onto this rank's device: no private copy of the weights
        # in host memory per rank. use_safetensors=True: never fall back to pickled .bin weights.
        transformers.utils.logging.disable_progress_bar()   # every rank's loading bar would tear the console
        self.model = AutoModelForImageTextToText.from_pretrained(
            cfg.model, dtype=DTYPES[cfg.dtype], use_safetensors=True, trust_remote_code=cfg.trust_remote_code,
            device_map={"": str(device)},
        ).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
        self.cfg, self.digit_ids = cfg, []
        if cfg.mode == "expected":  # checked before anything is judged: a wrong setup would skew every score
            self.digit_ids = digit_token_ids(self.processor.tokenizer, cfg.answer_prefix)
            check_prefill(self.processor, cfg.answer_prefix)

    def ask(self, queries: list[tuple[dict, Dimension, list[Image.Image]]]) -> list[dict[str, Any]]:
        """Answers to (manifest entry, dimension, images) queries: score, and response or distribution."""
        prefix = self.cfg.answer_prefix if self.cfg.mode == "expected" else None
        chats = [conversation(dimension, entry, images, prefix) for entry, dimension, images in queries]
        if self.cfg.mode == "generate":
            texts, tokens = generate_answers(self.model, self.processor, chats, self.cfg.max_new_tokens)
            return [{"score": extract_score(text), "response": text, "tokens": spent}
                    for text, spent in zip(texts, tokens)]
        found, tokens = expected_distributions(self.model, self.processor, chats, self.digit_ids)
        return [{"score": expected_score(dist), "distribution": [round(p, 6) for p in dist],
                 "valid_mass": round(mass, 6), "tokens": spent} for (dist, mass), spent in zip(found, tokens)]

    def write(self, chats: list[list[dict]]) -> list[dict[str, Any]]:
        """The judge's written answers to whole chats (the official protocol's questions), with their tokens."""
        texts, tokens = generate_answers(self.model, self.processor, chats, self.cfg.max_new_tokens)
        return [{"response": text, "tokens": spent} for text, spent in zip(texts, tokens)]


def digit_token_ids(tokenizer, answer_prefix: str) -> list[int]:
    """Token ids of "0".."9", once it is checked that the tokenizer writes a score after the prefix one digit a
    token (so that the probability of a digit token is the probability of that digit, and "10" is "1", "0").

    Raises:
        ValueError: if `answer_prefix + "10"` is not the prefix's tokens followed by one token per digit.
    """
    base = tokenizer(answer_prefix, add_special_tokens=False).input_ids
    written = tokenizer(answer_prefix + "10", add_special_tokens=False).input_ids
    ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(digit)) for digit in "0123456789"]
    if written != base + [ids[1][0], ids[0][0]] or any(len(i) != 1 for i in ids):
        raise ValueError(
            f"score.answer_prefix {answer_prefix!r}: this judge's tokenizer does not write a score after it as one "
            f"token per digit ({answer_prefix + '10'!r} -> {tokenizer.convert_ids_to_tokens(written)}); end the "
            "prefix where the number starts a new token (e.g. 'Score: ' with its space)")
    return [i[0] for i in ids]


def check_prefill(processor, answer_prefix: str) -> None:
    """Raise if the chat template does not end the prompt with the answer prefix exactly (a template or library
    that strips the trailing space would shift every score's position by a token)."""
    probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]},
             {"role": "assistant", "content": [{"type": "text", "text": answer_prefix}]}]
    text = processor.apply_chat_template(probe, tokenize=False, continue_final_message=True)
    if not text.endswith(answer_prefix):
        raise ValueError(f"the judge's chat template does not end a continued answer with {answer_prefix!r} "
                         f"(it ends with {text[-len(answer_prefix) - 10:]!r}); expected mode cannot read the score")


def _inputs(processor, conversations: list[list[dict]], model, **template_options):
    return processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_tensors="pt",
        # transformers 5.x reads padding options only inside processor_kwargs; outside it warns, and
        # padding=True alone pads on the right. Decoder-only batches are padded on the left, so every row's
        # next token follows its own prompt.
        processor_kwargs={"padding": True, "padding_side": "left"}, **template_options,
    ).to(model.device)


@torch.inference_mode()
def generate_answers(model, processor, conversations: list[list[dict]],
                     max_new_tokens: int) -> tuple[list[str], list[dict[str, int]]]:
    """Greedy answers to a batch of conversations, one string each (the prompt not included), and the tokens each
    read and wrote."""
    inputs = _inputs(processor, conversations, model, add_generation_prompt=True)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answers = output[:, inputs["input_ids"].shape[1]:]
    # Left padding before each prompt; after its answer, the rows that ended early are padded with pad tokens.
    pad = model.generation_config.pad_token_id
    written = (answers != pad).sum(dim=1) if pad is not None else torch.full((len(answers),), answers.shape[1])
    tokens = [{"prompt": int(n), "completion": int(w)} for n, w in zip(inputs["attention_mask"].sum(dim=1), written)]
    return processor.batch_decode(answers, skip_special_tokens=True), tokens


class _ForceFirstToken(LogitsProcessor):
    """Makes the first generated token `token_id`; later steps are left alone."""

    def __init__(self, token_id: int, prompt_length: int):
        self.token_id, self.prompt_length = token_id, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] != self.prompt_length:
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_id] = 0.0
        return forced


@torch.inference_mode()
def expected_distributions(model, processor, conversations: list[list[dict]],
                           digit_ids: list[int]) -> tuple[list[tuple[list[float], float]], list[dict[str, int]]]:
    """Score distributions for a batch of conversations whose answers end with the prefix, in two forward passes.

    One `generate` of two tokens with the first forced to "1": its raw logits are the distribution right after
    the prefix (step 1) and after "1" (step 2, reusing the KV cache), which tells 1 from 10.
    """
    inputs = _inputs(processor, conversations, model, continue_final_message=True)
    length = inputs["input_ids"].shape[1]
    output = model.generate(**inputs, max_new_tokens=2, do_sample=False,
                            logits_processor=LogitsProcessorList([_ForceFirstToken(digit_ids[1], length)]),
                            return_dict_in_generate=True, output_logits=True)
    first, after_one = output.logits
    tokens = [{"prompt": int(n), "completion": 2} for n in inputs["attention_mask"].sum(dim=1)]
    return [score_distribution(first[i], after_one[i], digit_ids) for i in range(len(conversations))], tokens


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

"""A judge behind an OpenAI-compatible server: a vLLM server the launcher started on this node, another endpoint,
or a hosted API.

Each (sample, dimension) query is a chat-completion request, up to `score.server.max_concurrency` in flight per
rank (and at most `requests_per_minute`). The `openai` client sends them with the per-request timeout and its
retries: connection errors, timeouts, 408, 409, 429 and 5xx are sent again with exponential backoff that honours
`Retry-After`. A request that still fails stops the stage with the server's error; nothing of its chunk is
recorded, so the same command resumes. An answer that holds no score (empty, refused, blocked by a content filter)
is recorded as failed with its reason: no score is ever made up. The API key is read from the environment
variable the config names and goes nowhere but the request's header.

Before anything is judged, `probe` asks the server once and settles how a score is read (`server_answers`), or
refuses a server that cannot give what the mode needs, naming what is missing and which mode would work.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import torch
from PIL import Image

from score_stage.chat import conversation
from score_stage.judges.server_answers import (Recipe, ServerError, first_probabilities, forced_probabilities,
                                               generate_body, no_answer, not_a_completion, openai_messages,
                                               prefilled_body, usage, written_body, written_probabilities)
from score_stage.parsing import extract_score
from score_stage.scoring import digit_distribution, expected_score
from shards.config import Dimension, ScoreConfig

PROBE_SYSTEM = "You are a judge. Answer with one line: Score: X (X an integer from 0 to 10)."
PROBE_USER = "Rate this answer's format. Score: X"
# The fields of a chat-completion request the `openai` client knows; any other goes in its `extra_body`.
CHECK_URL = "is score.server.url the API's base URL (usually ending in /v1)?"
OPENAI_FIELDS = ("model", "messages", "max_tokens", "temperature", "seed", "logprobs", "top_logprobs", "logit_bias")


def server_url(cfg: ScoreConfig) -> str:
    """The endpoint: the configured URL, or this node's server that the launcher started."""
    server = cfg.server
    return server.url if server.url else f"http://127.0.0.1:{server.start.port}/v1"


class RateLimit:
    """At most `per_minute` request starts a minute, spaced evenly, shared by the threads of one rank."""

    def __init__(self, per_minute: float | None):
        self.gap = 60.0 / per_minute if per_minute else 0.0
        self.lock, self.next = threading.Lock(), 0.0

    def wait(self) -> None:
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            start, self.next = max(now, self.next), max(now, self.next) + self.gap
        time.sleep(max(0.0, start - now))


class ServedJudge:
    """One rank's client of the judge server; `ask` answers a batch of queries, `max_concurrency` at a time."""

    def __init__(self, cfg: ScoreConfig):
        from openai import OpenAI

        server = cfg.server
        key = os.environ.get(server.api_key_env) if server.api_key_env else None
        if server.api_key_env and not key:
            raise ServerError(f"score.server.api_key_env: the environment variable {server.api_key_env} is not set "
                              "(it holds the API key)")
        self.cfg, self.url = cfg, server_url(cfg)
        self.client = OpenAI(base_url=self.url, api_key=key or "none", timeout=server.timeout_s,
                             max_retries=server.retries)
        self.pool = concurrent.futures.ThreadPoolExecutor(server.max_concurrency, thread_name_prefix="judge")
        self.limit = RateLimit(server.requests_per_minute)
        self.reported_model, self.recipe = probe(self)

    def ask(self, queries: list[tuple[dict, Dimension, list[Image.Image]]]) -> list[dict[str, Any]]:
        """Answers to (manifest entry, dimension, images) queries: score, and response or distribution, with the
        tokens in and out; or no score and why."""
        return list(self.pool.map(lambda query: self._answer(*query), queries))

    def write(self, chats: list[list[dict]]) -> list[dict[str, Any]]:
        """The judge's written answers to whole chats (the official protocol's questions), with their tokens; an
        answer that holds none (empty, refused, blocked) as failed, with why."""
        def one(chat: list[dict]) -> dict[str, Any]:
            response = self.send(generate_body(self.cfg.model, openai_messages(chat), self.cfg.max_new_tokens))
            why = no_answer(response["choices"][0])
            if why:
                return {"response": None, "failed": why, "tokens": usage(response)}
            return {"response": response["choices"][0]["message"]["content"], "tokens": usage(response)}

        return list(self.pool.map(one, chats))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _answer(self, entry: dict, dimension: Dimension, images: list[Image.Image]) -> dict[str, Any]:
        try:
            return self._ask_one(entry, dimension, images)
        except ServerError as e:      # a question refused (too long for the server's context, say): name which
            names = [n for n, d in self.cfg.prompts[entry["category"]].dimensions.items() if d == dimension]
            raise ServerError(f"judging sample {entry['id']!r}, dimension {names[0] if names else '?'!r}: {e}") \
                from None

    def _ask_one(self, entry: dict, dimension: Dimension, images: list[Image.Image]) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.mode == "generate":
            body = generate_body(cfg.model, openai_messages(conversation(dimension, entry, images)),
                                 cfg.max_new_tokens)
            return self._generated(self.send(body))
        if self.recipe.way == "written":
            messages = openai_messages(conversation(dimension, entry, images))
            response = self.send(written_body(cfg.model, messages, cfg.max_new_tokens, self.recipe.top_logprobs))
            return self._written(response)
        return self._prefilled(entry, dimension, images)

    def _generated(self, response: dict) -> dict[str, Any]:
        choice = response["choices"][0]
        why = no_answer(choice)
        if why:
            return {"score": None, "failed": why, "tokens": usage(response)}
        text = choice["message"]["content"]
        return {"score": extract_score(text), "response": text, "tokens": usage(response)}

    def _prefilled(self, entry: dict, dimension: Dimension, images: list[Image.Image]) -> dict[str, Any]:
        cfg, recipe = self.cfg, self.recipe
        messages = openai_messages(conversation(dimension, entry, images, cfg.answer_prefix))
        first = self.send(prefilled_body(cfg.model, messages, recipe))
        spent = usage(first)
        if recipe.digit_ids is not None:
            p, q = forced_probabilities(first["choices"][0], recipe)
        else:
            messages[-1] = {"role": "assistant", "content": [{"type": "text", "text": cfg.answer_prefix + "1"}]}
            after_one = self.send(prefilled_body(cfg.model, messages, recipe))
            p = first_probabilities(first["choices"][0], recipe)
            q = first_probabilities(after_one["choices"][0], recipe)
            spent = {k: spent[k] + usage(after_one)[k] for k in spent}
        return _distribution_answer(*digit_distribution(torch.tensor(p, dtype=torch.float64),
                                                        torch.tensor(q, dtype=torch.float64)), spent)

    def _written(self, response: dict) -> dict[str, Any]:
        choice = response["choices"][0]
        why = no_answer(choice)
        if why:
            return {"score": None, "failed": why, "tokens": usage(response)}
        found = written_probabilities(choice, self.cfg.answer_prefix)
        if found is None or not sum(found):
            return {"score": None, "failed": "the judge's answer wrote no score after "
                                             f"{self.cfg.answer_prefix.strip()!r}", "tokens": usage(response)}
        mass = sum(found)
        return _distribution_answer([p / mass for p in found], mass, usage(response))

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried by the client; its response as plain data.

        Raises:
            ServerError: naming the server and its answer, once the retries are spent.
        """
        import openai

        self.limit.wait()
        known = {k: v for k, v in body.items() if k in OPENAI_FIELDS}
        extra = {k: v for k, v in body.items() if k not in OPENAI_FIELDS}
        try:
            response = self.client.chat.completions.create(**known, extra_body=extra or None)
        except openai.APIStatusError as e:
            # No such route, not an API's own error (which names, say, a model the server does not serve).
            page = e.status_code in (404, 405) and not (isinstance(e.body, dict) and e.body.get("message"))
            where = f" (no chat completions there: {CHECK_URL})" if page else ""
            raise ServerError(f"the judge server at {self.url} answered {e.status_code}: {_message(e)}{where}") \
                from None
        except openai.APIError as e:     # connection refused, reset, timed out: after every retry
            raise ServerError(f"the judge server at {self.url} did not answer ({type(e).__name__}: {e}) after "
                              f"{self.cfg.server.retries} retries") from None
        # The client hands back a page that is not JSON as text, and JSON of another shape unchecked.
        answer = response.model_dump() if hasattr(response, "model_dump") else response
        wrong = not_a_completion(answer)
        if wrong:
            raise ServerError(f"the judge server at {self.url} did not answer as an OpenAI chat-completions API "
                              f"({wrong}): {CHECK_URL}")
        return answer


def _distribution_answer(distribution: list[float], mass: float, tokens: dict[str, int]) -> dict[str, Any]:
    if not mass > 0:       # no digit among the likeliest tokens the server reported: no score to weigh
        return {"score": None, "failed": "no score among the likeliest tokens the server reported after the "
                                         "answer prefix", "tokens": tokens}
    return {"score": expected_score(distribution), "distribution": [round(p, 6) for p in distribution],
            "valid_mass": round(mass, 6), "tokens": tokens}


def _message(error) -> str:
    body = getattr(error, "body", None)
    text = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(text or error).split())[:300]


def probe(judge: ServedJudge) -> tuple[str | None, Recipe | None]:
    """Ask the server once: the model it reports (None if it names none), and for `expected` mode how a score is
    read.

    Raises:
        ServerError: the server cannot be reached, or cannot give what the mode needs, naming what is missing.
    """
    cfg = judge.cfg
    chat = [{"role": "system", "content": [{"type": "text", "text": PROBE_SYSTEM}]},
            {"role": "user", "content": [{"type": "text", "text": PROBE_USER}]}]
    answered = judge.send(generate_body(cfg.model, openai_messages(chat), 8))
    reported = answered.get("model") or None      # a server that names none is recorded so, not as the config's
    if cfg.mode == "generate":
        return reported, None
    digit_ids = _digit_ids(judge)
    recipe = Recipe("prefilled", digit_ids, cfg.server.top_logprobs)
    prefilled = chat + [{"role": "assistant", "content": [{"type": "text", "text": cfg.answer_prefix}]}]
    try:
        response = judge.send(prefilled_body(cfg.model, openai_messages(prefilled), recipe))
    except ServerError as e:
        if " answered 400" not in str(e) and " answered 422" not in str(e):
            raise
        return reported, _written_recipe(judge, chat, str(e))
    choice = response["choices"][0]
    if not (choice.get("logprobs") or {}).get("content"):
        raise ServerError(f"the judge server at {judge.url} returns no logprobs: expected mode reads the score's "
                          "probabilities from them; use score.mode: generate with this server")
    if digit_ids is None and len(choice["logprobs"]["content"][0].get("top_logprobs") or []) < 11:
        raise ServerError(f"the judge server at {judge.url} returns fewer than 11 of the likeliest tokens "
                          f"(score.server.top_logprobs: {cfg.server.top_logprobs}): too few to cover the digits; "
                          "use score.mode: generate, or a server that reports chosen tokens' logprobs (vLLM)")
    forced_probabilities(choice, recipe) if digit_ids is not None else first_probabilities(choice, recipe)
    return reported, recipe


def _written_recipe(judge: ServedJudge, chat: list[dict], why: str) -> Recipe:
    """A server that does not continue prefilled answers: its scores are read where the judge writes them, which
    needs each score 0..10 written as one token (asked of the server: does it write "10" as one token?)."""
    cfg = judge.cfg
    ask = [*chat[:1], {"role": "user", "content": [{"type": "text", "text": "Reply with exactly: 10"}]}]
    response = judge.send(written_body(cfg.model, openai_messages(ask), 4, 1))
    tokens = [p["token"].strip() for p in (response["choices"][0].get("logprobs") or {}).get("content") or []]
    if not tokens:
        raise ServerError(f"the judge server at {judge.url} returns no logprobs: expected mode reads the score's "
                          "probabilities from them; use score.mode: generate with this server")
    if "10" not in tokens:
        raise ServerError(f"the judge server at {judge.url} does not continue a prefilled answer ({why[:200]}), and "
                          f"it writes 10 as {tokens[:4]}, not as one token, so where the judge writes a 1 there is "
                          "no telling 1 from 10; use score.mode: generate with this server, or a server that "
                          "continues answers (vLLM)")
    return Recipe("written", None, cfg.server.top_logprobs)


def _digit_ids(judge: ServedJudge) -> tuple[int, ...] | None:
    """The server tokenizer's ids of "0".."9", from vLLM's /tokenize (None where the server has none, or a digit
    is not one token)."""
    parts = urllib.parse.urlsplit(judge.url)
    root = f"{parts.scheme}://{parts.netloc}"
    ids = []
    for digit in "0123456789":
        request = urllib.request.Request(root + "/tokenize", method="POST", headers={
            "Content-Type": "application/json"}, data=json.dumps({"model": judge.cfg.model, "prompt": digit,
                                                                 "add_special_tokens": False}).encode())
        try:
            with urllib.request.urlopen(request, timeout=judge.cfg.server.timeout_s) as answer:
                tokens = json.load(answer).get("tokens")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        if not isinstance(tokens, list) or len(tokens) != 1:
            return None
        ids.append(int(tokens[0]))
    return tuple(ids)

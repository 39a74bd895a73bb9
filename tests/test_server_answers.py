"""What a judge server's answer means for a score: hand-made responses in the OpenAI format through the pure
functions of score_stage.judges.server_answers (a real vLLM server is in tests/test_served.py)."""

import base64
import contextlib
import dataclasses
import io
import json
import math
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from score_stage.judges.server_answers import (SCORE_TEXTS, Recipe, ServerError, data_url, first_probabilities,
                                               forced_probabilities, no_answer, not_a_completion, openai_messages,
                                               prefilled_body, usage, written_probabilities)
from score_stage.scoring import digit_distribution, score_distribution
from shards.config import load_config
from shards.config_schema import ServerConfig

DIGIT_IDS = tuple(range(100, 110))        # a made-up tokenizer's "0".."9"
SERVED_CPU = os.path.join(REPO, "configs", "demo-served.yaml")


def position(token: str, alternatives: dict[str, float]) -> dict:
    return {"token": token, "logprob": alternatives.get(token, -9.0),
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives.items()]}


def test_a_forced_answer_gives_both_steps_of_the_in_process_judge():
    logits_first, logits_after = torch.randn(200, dtype=torch.float64), torch.randn(200, dtype=torch.float64)
    logp_first, logp_after = torch.log_softmax(logits_first, 0), torch.log_softmax(logits_after, 0)
    recipe = Recipe("prefilled", DIGIT_IDS)
    choice = {"logprobs": {"content": [
        position("token_id:101", {f"token_id:{i}": float(logp_first[i]) for i in DIGIT_IDS}),
        position("token_id:100", {f"token_id:{i}": float(logp_after[i]) for i in DIGIT_IDS})]}}
    p, q = forced_probabilities(choice, recipe)
    served = digit_distribution(torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64))
    in_process = score_distribution(logits_first, logits_after, list(DIGIT_IDS))
    assert np.allclose(served[0], in_process[0], rtol=0, atol=1e-12) and math.isclose(served[1], in_process[1])


def test_an_answer_whose_first_token_was_not_forced_is_refused_not_read():
    choice = {"logprobs": {"content": [position("token_id:107", {"token_id:107": -0.1}),
                                       position("token_id:100", {"token_id:100": -0.1})]}}
    with pytest.raises(ServerError, match="did not force the first token"):
        forced_probabilities(choice, Recipe("prefilled", DIGIT_IDS))
    with pytest.raises(ServerError, match="1 position"):
        forced_probabilities({"logprobs": {"content": choice["logprobs"]["content"][:1]}}, Recipe("prefilled",
                                                                                                 DIGIT_IDS))


def test_digits_read_by_text_count_a_digit_the_server_did_not_report_as_zero():
    choice = {"logprobs": {"content": [position("7", {"7": math.log(0.5), "8": math.log(0.2), "seven": -0.1,
                                                      "10": math.log(0.1)})]}}
    p = first_probabilities(choice, Recipe("prefilled", None))
    assert p[7] == pytest.approx(0.5) and p[8] == pytest.approx(0.2)
    assert sum(1 for v in p if v) == 2                     # "10" is no digit token; "seven" is no digit


def test_a_written_score_is_read_where_it_begins_from_whole_number_tokens():
    content = [position("The", {"The": -0.1}), position(" edit", {" edit": -0.1}), position(" is", {}),
               position(" fine", {}), position(".", {}), position(" Score", {}), position(":", {}),
               position(" 10", {" 10": math.log(0.6), " 9": math.log(0.3), " 1": math.log(0.05), " ten": -2.0}),
               position(".", {})]
    found = written_probabilities({"logprobs": {"content": content}}, "Score: ")
    assert found[10] == pytest.approx(0.6) and found[9] == pytest.approx(0.3) and found[1] == pytest.approx(0.05)
    assert sum(found) == pytest.approx(0.95)
    assert written_probabilities({"logprobs": {"content": content[:5]}}, "Score: ") is None   # no prefix written


@pytest.mark.parametrize("choice, reason", [
    ({"finish_reason": "content_filter", "message": {"content": ""}}, "content filter"),
    ({"finish_reason": "stop", "message": {"content": None, "refusal": "I can't help\nwith that."}},
     "refused: I can't help with that."),
    ({"finish_reason": "stop", "message": {"content": "   "}}, "empty"),
])
def test_an_answer_without_a_score_to_read_says_why(choice, reason):
    assert reason in no_answer(choice)


def test_an_answer_with_text_is_an_answer():
    assert no_answer({"finish_reason": "length", "message": {"content": "Score: 7"}}) is None


def test_pictures_go_as_lossless_png_data_urls():
    pixels = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    url = data_url(Image.fromarray(pixels))
    assert url.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert np.array_equal(back, pixels)
    chat = [{"role": "system", "content": [{"type": "text", "text": "judge"}]},
            {"role": "user", "content": [{"type": "image", "image": Image.fromarray(pixels)},
                                         {"type": "text", "text": "Score: X"}]}]
    messages = openai_messages(chat)
    assert messages[1]["content"][0] == {"type": "image_url", "image_url": {"url": url}}
    assert messages[0]["content"] == [{"type": "text", "text": "judge"}]


def test_a_prefilled_request_continues_the_answer_at_the_top_level_never_in_template_kwargs():
    with_ids = prefilled_body("m", [], Recipe("prefilled", DIGIT_IDS))
    assert with_ids["continue_final_message"] is True and with_ids["add_generation_prompt"] is False
    assert "chat_template_kwargs" not in with_ids
    assert with_ids["max_tokens"] == 2 and with_ids["logit_bias"] == {"101": 100}
    assert with_ids["logprob_token_ids"] == list(DIGIT_IDS)
    by_text = prefilled_body("m", [], Recipe("prefilled", None, top_logprobs=20))
    assert by_text["max_tokens"] == 1 and by_text["top_logprobs"] == 20 and "logit_bias" not in by_text


def test_tokens_are_read_from_the_usage_the_server_reports():
    assert usage({"usage": {"prompt_tokens": 120, "completion_tokens": 2}}) == {"prompt": 120, "completion": 2}
    assert usage({}) == {"prompt": 0, "completion": 0}


def test_no_digit_among_the_tokens_a_server_reported_is_a_failed_answer_never_a_score():
    from score_stage.judges.served import _distribution_answer

    answer = _distribution_answer([float("nan")] * 11, 0.0, {"prompt": 5, "completion": 1})
    assert answer["score"] is None and "no score among the likeliest tokens" in answer["failed"]


@pytest.mark.parametrize("answer, why", [
    ("<html><body>Welcome to nginx</body></html>", "not JSON: '<html><body>Welcome to nginx"),
    ({"status": "ok"}, "no choices"),
    ({"object": "chat.completion", "choices": []}, "no choices"),
    ({"choices": [{"text": "Score: 7"}]}, "no message"),
])
def test_an_answer_that_is_not_a_chat_completion_says_what_it_is(answer, why):
    # A URL that answers, but not as an OpenAI chat-completions API (a web page, a health endpoint, a completions
    # API): named, never read as an answer without a score.
    assert why in not_a_completion(answer)


def test_a_chat_completion_is_one():
    assert not_a_completion({"choices": [{"message": {"content": "Score: 7"}, "finish_reason": "stop"}]}) is None


@contextlib.contextmanager
def site(reply):
    """A local HTTP endpoint answering each POST with `reply(path, body)`: (status, content type, bytes)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            status, kind, data = reply(self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def served_judge(url: str, mode: str = "expected"):
    from score_stage.judges.served import ServedJudge

    score = load_config(SERVED_CPU).score
    return ServedJudge(dataclasses.replace(score, mode=mode, server=ServerConfig(url=url, retries=0)))


@pytest.mark.parametrize("status, page, said", [
    (200, b"<html><body>Welcome to nginx</body></html>", "did not answer as an OpenAI chat-completions API"),
    (404, b"<html>Not Found</html>", "answered 404"),
    (404, b'{"detail": "Not Found"}', "answered 404"),        # vLLM's answer to a URL without its /v1
])
def test_a_url_that_answers_but_is_no_chat_completions_api_is_refused_naming_it(status, page, said):
    kind = "application/json" if page.startswith(b"{") else "text/html"
    with site(lambda path, body: (status, kind, page)) as url:
        with pytest.raises(ServerError, match=rf"(?s){said}.*score\.server\.url"):
            served_judge(url)


def test_a_question_the_server_refuses_stops_the_stage_naming_the_sample_and_dimension():
    def reply(path, body):
        if "a street" in json.dumps(body):        # the sample's question, not the probe's
            error = {"error": {"message": "This model's maximum context length is 2048 tokens.", "code": 400}}
            return 400, "application/json", json.dumps(error).encode()
        answer = {"model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                       "message": {"role": "assistant", "content": "Score: 5"}}]}
        return 200, "application/json", json.dumps(answer).encode()

    dimension = next(iter(load_config(SERVED_CPU).score.prompts["环境"].dimensions.items()))
    entry = {"id": "env-07", "category": "环境", "instruction": "make it rain", "description": "a street"}
    with site(reply) as url:
        judge = served_judge(url, mode="generate")
        with pytest.raises(ServerError, match=rf"sample 'env-07', dimension '{dimension[0]}'.*maximum context"):
            judge.ask([(entry, dimension[1], [Image.new("RGB", (64, 64))])])


def test_the_way_a_score_is_read_is_named_with_what_changes_it():
    from score_stage.judges.server_answers import reading

    assert reading(Recipe("prefilled", DIGIT_IDS, 20)) == reading(Recipe("prefilled", DIGIT_IDS, 5))   # unused
    assert reading(Recipe("prefilled", None, 20)) != reading(Recipe("prefilled", None, 5))
    assert reading(Recipe("written", None, 20)) != reading(Recipe("prefilled", None, 20))
    assert reading(None) is None                                                   # generate mode reads text


def test_a_written_score_is_read_right_after_the_prefix_never_from_a_later_number():
    def written(*tokens):
        scores = {" 3": math.log(0.7), " 4": math.log(0.2), "7": math.log(0.6), "8": math.log(0.3)}
        return {"logprobs": {"content": [position(t, scores if t.strip() in SCORE_TEXTS else {}) for t in tokens]}}

    # No score after the prefix: the 3 a sentence later is no score, and reading it would make one up.
    assert written_probabilities(written("Score", ":", " X", ".", " I", " give", " 3", " stars"), "Score: ") is None
    bold = written_probabilities(written("Score", ":", " **", "7", "**"), "Score: ")       # as the text parser
    assert bold[7] == pytest.approx(0.6) and bold[8] == pytest.approx(0.3)
    # The last prefix followed by a score, as the text parser takes the last labelled score.
    last = written_probabilities(written("Score", ":", " 3", ".", " (", "Score", ":", " X", " means", ")"), "Score: ")
    assert last[3] == pytest.approx(0.7)


def test_a_model_the_server_does_not_serve_is_named_as_the_server_says_without_blaming_the_url():
    error = {"error": {"message": "The model `m` does not exist.", "type": "NotFoundError", "code": 404}}
    with site(lambda path, body: (404, "application/json", json.dumps(error).encode())) as url:
        with pytest.raises(ServerError, match="answered 404: The model `m` does not exist.$"):
            served_judge(url)


def test_a_server_that_names_no_model_is_recorded_as_naming_none_not_as_the_configs():
    def reply(path, body):                 # a bare OpenAI-compatible server: no "model" in its answers
        answer = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                                                                              "content": "Score: 5"}}]}
        return 200, "application/json", json.dumps(answer).encode()

    with site(reply) as url:
        assert served_judge(url, mode="generate").reported_model is None

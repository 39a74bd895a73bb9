"""The judge on a tiny random-weight Qwen3-VL (built here, loaded with from_pretrained): expected mode against a hand
computation from the same forward passes, two-image dimensions, forward passes per batch, and tokenizer guards."""

import dataclasses
import json
import time

import pytest
import torch
from PIL import Image

from conftest import run_module, write_config
from score_stage.chat import conversation
from score_stage.judges.in_process import InProcessJudge, check_prefill, digit_token_ids
from shards.config import load_config


@pytest.fixture(scope="module")
def judge_config(tmp_path_factory):
    from score_stage.tiny import build_tiny_judge

    folder = tmp_path_factory.mktemp("judge")
    model = build_tiny_judge(folder / "tiny-judge", moe=True, seed=3)
    config = load_config(write_config(folder, {"score.model": str(model), "score.build_tiny": False}))
    return config.score


@pytest.fixture(scope="module")
def judge(judge_config):
    return InProcessJudge(judge_config, torch.device("cpu"))


def _entry(sample_id, category="物理"):
    return {"id": sample_id, "category": category, "instruction": f"Edit {sample_id}.", "description": "A scene."}


def _image(color, size=(64, 48)):
    return Image.new("RGB", size, color)


def _queries(config, dimension_name="score", category="环境"):
    dimension = config.prompts[category].dimensions[dimension_name]
    return [(_entry("a", category), dimension, [_image((200, 30, 30))]),
            (_entry("b", category), dimension, [_image((30, 30, 200), (96, 64))])]


def _by_hand(judge, queries):
    """Sum p(s)*s from two plain forward passes (prompt; prompt + "1"), written out without the code under test."""
    chats = [conversation(dim, e, images, judge.cfg.answer_prefix) for e, dim, images in queries]
    inputs = judge.processor.apply_chat_template(
        chats, tokenize=True, return_dict=True, return_tensors="pt", continue_final_message=True,
        processor_kwargs={"padding": True, "padding_side": "left"})
    tokenizer = judge.processor.tokenizer
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    one = torch.full((len(chats), 1), digits[1])
    longer = {**inputs, "input_ids": torch.cat([inputs["input_ids"], one], 1),
              "attention_mask": torch.cat([inputs["attention_mask"], torch.ones_like(one)], 1)}
    if "mm_token_type_ids" in inputs:
        longer["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(one)], 1)
    with torch.inference_mode():
        p = torch.softmax(judge.model(**inputs).logits[:, -1].double(), -1)
        q = torch.softmax(judge.model(**longer).logits[:, -1].double(), -1)
    scores = []
    for row in range(len(chats)):
        mass = {s: p[row, digits[s]].item() for s in (0, 2, 3, 4, 5, 6, 7, 8, 9)}
        mass[1] = p[row, digits[1]].item() * (1 - sum(q[row, d].item() for d in digits))
        mass[10] = p[row, digits[1]].item() * q[row, digits[0]].item()
        scores.append(sum(s * m for s, m in mass.items()) / sum(mass.values()))
    return scores


def test_expected_mode_is_the_hand_computed_sum_from_the_same_forward(judge):
    queries = _queries(judge.cfg)
    answers = judge.ask(queries)
    assert [a["score"] for a in answers] == pytest.approx(_by_hand(judge, queries), abs=1e-5)
    for answer in answers:
        assert 0.0 <= answer["score"] <= 10.0
        assert len(answer["distribution"]) == 11 and sum(answer["distribution"]) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 < answer["valid_mass"] <= 1.0


def test_a_dimension_that_sees_two_images_passes_two_images_to_the_processor(judge, monkeypatch):
    reasoning = judge.cfg.prompts["物理"].dimensions["reasoning"]
    assert reasoning.images == "original_and_edited"
    original, edited = _image((10, 200, 10)), _image((200, 10, 200), (96, 64))
    chat = conversation(reasoning, _entry("p"), [original, edited], judge.cfg.answer_prefix)
    seen = []
    real = type(judge.processor).__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("images"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(judge.processor), "__call__", spy)
    judge.ask([(_entry("p"), reasoning, [original, edited])])
    (images,) = seen
    flat = [i for group in images for i in (group if isinstance(group, list) else [group])]
    assert [i.size for i in flat] == [(64, 48), (96, 64)]                  # the original first, then the edit
    text = judge.processor.apply_chat_template([chat], tokenize=False, continue_final_message=True)[0]
    assert text.index("First picture (the original image)") < text.index("Second picture (the edited image)")
    assert text.count("<|vision_start|>") == 2 and text.endswith("Score: ")


def _forward_passes(judge, queries):
    calls = []
    hook = judge.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        start = time.perf_counter()
        answers = judge.ask(queries)
        return len(calls), time.perf_counter() - start, answers
    finally:
        hook.remove()


def test_expected_mode_makes_two_forward_passes_a_batch_generate_up_to_max_new_tokens(judge_config, judge):
    queries = _queries(judge.cfg)
    expected_passes, expected_s, _ = _forward_passes(judge, queries)
    generating = InProcessJudge(dataclasses.replace(judge_config, mode="generate"), torch.device("cpu"))
    generate_passes, generate_s, answers = _forward_passes(generating, queries)
    assert expected_passes == 2
    assert 1 <= generate_passes <= judge_config.max_new_tokens and all("response" in a for a in answers)
    print(f"\nper batch of {len(queries)}: expected mode {expected_passes} forward passes, {expected_s:.3f} s; "
          f"generate mode {generate_passes} forward passes (max_new_tokens {judge_config.max_new_tokens}), "
          f"{generate_s:.3f} s")


def test_the_tiny_judges_tokenizer_writes_a_score_one_digit_a_token(judge):
    tokenizer = judge.processor.tokenizer
    ids = digit_token_ids(tokenizer, "Score: ")
    assert tokenizer.convert_ids_to_tokens(ids) == [str(d) for d in range(10)]
    check_prefill(judge.processor, "Score: ")


def test_a_tokenizer_that_writes_10_as_one_token_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[UNK]", "Score:", *map(str, range(11))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(ValueError, match="does not write a score after it as one token per digit"):
        digit_token_ids(tokenizer, "Score: ")


def test_a_template_that_drops_the_prefixs_space_is_refused(judge, monkeypatch):
    real = judge.processor.apply_chat_template
    monkeypatch.setattr(judge.processor, "apply_chat_template", lambda *a, **k: real(*a, **k).rstrip())
    with pytest.raises(ValueError, match="does not end a continued answer with 'Score: '"):
        check_prefill(judge.processor, "Score: ")


@pytest.mark.slow
def test_the_judge_benchmark_runs_on_cpu_at_real_width_in_both_modes(pythons, tmp_path):
    out = tmp_path / "judge.json"
    done = run_module(pythons["score"], ["-m", "score_stage.bench", "--device", "cpu", "--layers", "1",
                                         "--batch-size", "2", "--images", "2", "--image-size", "128",
                                         "--max-new-tokens", "6", "--checkpoint-dir", str(tmp_path), "--json",
                                         str(out)], timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device"]["type"] == "cpu" and figures["versions"]["transformers"].startswith("5.")
    assert figures["build"]["parameters"] == 1_326_483_408          # one layer of the real width, 128 experts
    for mode in ("expected", "generate"):
        timed = figures["backends"]["transformers"][mode]
        assert timed["queries"] == 2 and timed["seconds"] > 0           # both queries timed, in one batch of 2
        assert timed["s_per_image"] == pytest.approx(timed["seconds"] / timed["queries"], abs=1e-3), timed
    assert figures["backends"]["transformers"]["expected"]["scored"] == 2   # expected mode always gives a number
    # Loading maps the files: no private copy of the weights in host memory.
    assert figures["host_rss_after_load"]["anon"] < 0.5 * figures["weights_bytes"]
    timed = figures["backends"]["transformers"]
    print(f"\njudge bench (CPU, 1 layer): expected {timed['expected']['s_per_image']} s/image, "
          f"generate {timed['generate']['s_per_image']} s/image")


def test_a_samples_own_field_is_written_into_the_prompt(judge):
    dimension = dataclasses.replace(judge.cfg.prompts["环境"].dimensions["score"],
                                    user_prompt_template="Do {instruction}; expected: {extra[reference]}. Score: X")
    entry = {**_entry("r", "环境"), "extra": {"reference": "a rotten banana"}}
    chat = conversation(dimension, entry, [_image((1, 2, 3))], judge.cfg.answer_prefix)
    text = judge.processor.apply_chat_template([chat], tokenize=False, continue_final_message=True)[0]
    assert "Do Edit r.; expected: a rotten banana. Score: X" in text

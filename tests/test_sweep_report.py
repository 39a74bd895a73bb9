"""A sweep's report (`launch.sweep`): the checkpoints' order, their figures and paired differences computed as
`launch compare` computes them, the best checkpoint and how sure that is, and sweep.json/.md/.html."""

import pytest

from launch.sweep.order import checkpoint_order, natural_key, step_number


@pytest.mark.parametrize("name, step", [
    ("step-500", 500), ("checkpoint_1000", 1000), ("global_step1500", 1500), ("ckpt-2k", 2000),
    ("iter 7", 7), ("steps-3M", 3_000_000), ("rl-0003", 3), ("lora-r16-step-250", 250),
    ("qwen2.5-step-40", 40), ("final", None), ("best", None), ("qwen2.5", None), ("step-1.5k", None),
    ("ckpt-2kb", 2), ("模型-步骤-12", 12)])
def test_a_name_gives_its_step_as_documented(name, step):
    assert step_number(name) == step


def test_checkpoints_are_ordered_by_step_after_the_base():
    names = ["step-10", "step-9", "base", "step-100", "step-1k"]
    assert checkpoint_order(names, "base") == (["base", "step-9", "step-10", "step-100", "step-1k"], "step")
    # A step decides, whatever comes before the number: sorted as text, ckpt-2k would come before step-500.
    assert checkpoint_order(["ckpt-2k", "step-500", "checkpoint_1000"], None) == (
        ["step-500", "checkpoint_1000", "ckpt-2k"], "step")


def test_names_with_the_same_step_are_ordered_by_name():
    assert checkpoint_order(["b-step-5", "a-step-5", "a-step-4"])[0] == ["a-step-4", "a-step-5", "b-step-5"]


def test_names_without_numbers_are_ordered_by_name_case_blind():
    assert checkpoint_order(["gamma", "Alpha", "beta"], None) == (["Alpha", "beta", "gamma"], "natural")


def test_one_name_without_a_step_makes_the_order_natural_digits_compared_as_numbers():
    names = ["step-10", "final", "step-9", "step-1k", "base"]
    assert checkpoint_order(names, "base") == (["base", "final", "step-1k", "step-9", "step-10"], "natural")
    assert sorted(["a-10", "a-9", "a-9b", "A-9"], key=natural_key) == ["A-9", "a-9", "a-9b", "a-10"]


def test_the_base_comes_first_also_when_it_is_not_among_the_names_and_a_name_given_twice_is_refused():
    assert checkpoint_order(["step-2", "step-1"], "base")[0] == ["base", "step-1", "step-2"]
    with pytest.raises(ValueError, match="given more than once: step-1"):
        checkpoint_order(["step-1", "step-2", "step-1"], None)

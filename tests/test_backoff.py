"""A score batch that runs out of GPU memory is retried at half its size, down to one, and the retry is told."""

import pytest
import torch

from score_stage.judges.in_process import batches_with_backoff


def _judge_that_fits(limit, calls):
    def ask(batch):
        calls.append(len(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory ({len(batch)} samples)")
        return [f"answer {x}" for x in batch]
    return ask


def test_an_oversized_batch_is_halved_and_the_smaller_size_kept():
    calls, retries = [], []
    out = list(batches_with_backoff(list(range(10)), 8, _judge_that_fits(3, calls), lambda *a: retries.append(a)))
    assert [x for batch, _ in out for x in batch] == list(range(10))          # every item once, in order
    assert all(answers == [f"answer {x}" for x in batch] for batch, answers in out)
    assert retries == [(8, 4), (4, 2)]
    assert calls == [8, 4, 2, 2, 2, 2, 2]


def test_batches_that_fit_are_not_retried():
    calls, retries = [], []
    out = list(batches_with_backoff(list(range(5)), 2, _judge_that_fits(2, calls), lambda *a: retries.append(a)))
    assert [len(b) for b, _ in out] == [2, 2, 1] and retries == [] and calls == [2, 2, 1]


def test_a_short_last_batch_is_halved_from_its_own_size():
    retries = []
    out = list(batches_with_backoff(list(range(6)), 4, _judge_that_fits(1, []), lambda *a: retries.append(a)))
    assert [len(b) for b, _ in out] == [1] * 6
    assert retries == [(4, 2), (2, 1)]


def test_a_single_sample_that_does_not_fit_raises():
    with pytest.raises(torch.OutOfMemoryError):
        list(batches_with_backoff([1, 2], 2, _judge_that_fits(0, []), lambda *a: None))


def test_other_errors_are_not_retried():
    def ask(batch):
        raise ValueError("a bug, not memory")
    with pytest.raises(ValueError):
        list(batches_with_backoff([1, 2], 2, ask, lambda *a: pytest.fail("retried a non-memory error")))


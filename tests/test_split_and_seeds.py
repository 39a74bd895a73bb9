"""The rank split and the per-sample seeds: pure functions the stages' correctness rests on."""

import pytest

from shards.dataset import derive_seed, split_for_rank


@pytest.mark.parametrize("n", [0, 1, 5, 10, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 6])
def test_split_covers_every_item_once_and_balances(n, world):
    items = [f"s{i}" for i in range(n)]
    shares = [split_for_rank(items, rank, world) for rank in range(world)]
    flat = [x for share in shares for x in share]
    assert sorted(flat) == sorted(items)
    assert len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_split_spreads_a_sorted_category_over_all_ranks():
    items = ["a"] * 4 + ["b"] * 4
    assert [sorted(set(split_for_rank(items, r, 2))) for r in range(2)] == [["a", "b"], ["a", "b"]]


@pytest.mark.parametrize("rank, world", [(-1, 2), (2, 2), (0, 0)])
def test_split_rejects_a_rank_outside_the_world(rank, world):
    with pytest.raises(ValueError, match="outside a world"):
        split_for_rank([1, 2, 3], rank, world)


def test_seed_depends_on_base_and_id_only():
    assert derive_seed(0, "phys-01") == derive_seed(0, "phys-01")
    assert derive_seed(0, "phys-01") != derive_seed(0, "phys-02")
    assert derive_seed(0, "phys-01") != derive_seed(1, "phys-01")
    assert 0 <= derive_seed(123, "物理-样本") < 2**63

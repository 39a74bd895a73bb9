"""The work queue of a world of one and the per-sample seeds, which the stages' correctness rests on."""

import torch

from shards.dataset import derive_seed
from shards.dist import DistState, WorkQueue


def test_a_world_of_one_takes_every_position_of_the_queue_once_in_order():
    state = DistState(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    assert list(WorkQueue(5, state, "test")) == [0, 1, 2, 3, 4] and list(WorkQueue(0, state, "test")) == []


def test_seed_depends_on_base_and_id_only():
    assert derive_seed(0, "phys-01") == derive_seed(0, "phys-01")
    assert derive_seed(0, "phys-01") != derive_seed(0, "phys-02")
    assert derive_seed(0, "phys-01") != derive_seed(1, "phys-01")
    assert 0 <= derive_seed(123, "物理-样本") < 2**63

"""The work queue of a world of one and the per-sample seeds, which the stages' correctness rests on."""

import os
import subprocess
import sys

import torch

from conftest import REPO
from shards.dataset import derive_seed
from shards.runtime.dist import DistState, WorkQueue


def test_a_world_of_one_takes_every_position_of_the_queue_once_in_order():
    state = DistState(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    assert list(WorkQueue(5, state, "test")) == [0, 1, 2, 3, 4] and list(WorkQueue(0, state, "test")) == []


def test_seed_depends_on_base_and_id_only():
    # Pinned: the manifests of past runs record these seeds (the demo's manifest holds the first two), so a change
    # of the formula, of the text encoding or of the byte order would make other images under the same config.
    assert derive_seed(0, "phys-01") == 6996265692049766392
    assert derive_seed(0, "phys-02") == 5213922627570201507
    assert derive_seed(1, "phys-01") == 8337218997069122835
    assert derive_seed(123, "物理-样本") == 1930391658052043708          # a non-ASCII id: hashed as UTF-8
    assert derive_seed(42, "") == 176599027846379522
    assert derive_seed(0, "phys-01") != derive_seed(0, "phys-02")
    assert derive_seed(0, "phys-01") != derive_seed(1, "phys-01")
    assert 0 <= derive_seed(123, "物理-样本") < 2**63


def test_a_cpu_rank_uses_one_thread_whatever_the_rank_count_unless_omp_num_threads_is_set():
    # torchrun sets OMP_NUM_THREADS=1 for each of several ranks but leaves a single rank all the cores, and a
    # thread count moves float sums in their last bits: one rank would make other images than two.
    def threads(omp: str | None, init: bool) -> str:
        probe = "import torch; from shards.runtime.dist import init_distributed; " + \
                ("init_distributed('cpu', 60); " if init else "") + "print(torch.get_num_threads())"
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RANK", "WORLD_SIZE")}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**env, **({"OMP_NUM_THREADS": omp} if omp else {})})
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert threads(None, init=True) == "1"
    assert threads("2", init=True) == threads("2", init=False)          # an explicit setting is left to torch


def test_an_empty_or_invalid_omp_num_threads_counts_as_not_set():
    # `export OMP_NUM_THREADS=` leaves it empty: torch then takes every core, and so does torchrun's several ranks
    # (it only fills in a variable that is absent), so one thread must still be chosen here.
    probe = "import torch; from shards.runtime.dist import init_distributed; init_distributed('cpu', 60); " \
            "print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RANK", "WORLD_SIZE")}
    for value in ("", " ", "abc", "0"):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**env, "OMP_NUM_THREADS": value})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "1", (value, done.stdout)

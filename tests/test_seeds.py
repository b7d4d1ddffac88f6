"""Derived seeds as functions: distinct inputs give distinct seeds, equal inputs equal ones.

The augmentation seed of ``(seed, epoch, index)``, the loader workers' seeds (per worker, epoch,
rank and data seed), and the model's random stream across a resume (dropout): none may collapse
two inputs into one, and none may depend on when a loader happens to be made.
"""

import itertools
import random

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only

from seg.checkpoint import rng_states, set_rng_states
from seg.data import SegmentationDataModule
from seg.data.sampler import SeededSampler, sample_seed


def test_the_augmentation_seed_is_injective_over_seed_epoch_and_index():
    grid = list(itertools.product((0, 1, 2, 7, 1234), range(16), range(64)))
    seeds = {sample_seed(*key) for key in grid}
    assert len(seeds) == len(grid)  # 5120 inputs, 5120 seeds
    # Equal sums and permuted triples are different inputs too.
    triples = [(0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 2, 3), (3, 2, 1), (2, 1, 3)]
    assert len({sample_seed(*t) for t in triples}) == len(triples)
    assert all(0 <= s < 2**32 for s in seeds)
    assert sample_seed(3, 4, 5) == sample_seed(3, 4, 5)


def test_the_sampler_pairs_each_index_with_its_own_seed_on_every_rank():
    dataset = list(range(10))
    seen = {}
    for epoch in range(4):
        for rank in range(2):
            sampler = SeededSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=5)
            sampler.set_epoch(epoch)
            for index, seed in sampler:
                assert seed == sample_seed(5, epoch, index)
                assert (epoch, index) not in seen  # each image once per epoch over the ranks
                seen[epoch, index] = seed
    assert len(seen) == 40 and len(set(seen.values())) == 40


def test_image_zero_in_epoch_one_is_not_image_one_in_epoch_zero(voc_root):
    """Seed 0, epoch 1 and seed 1, epoch 0 (same sum): other crops of the same image."""
    dm = SegmentationDataModule(str(voc_root), num_workers=0, crop_size=24, color_jitter=0.3)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    first = dataset[(0, sample_seed(0, 1, 0))]["image"]
    again = dataset[(0, sample_seed(0, 1, 0))]["image"]
    other = dataset[(0, sample_seed(1, 0, 0))]["image"]
    assert torch.equal(first, again) and not torch.equal(first, other)


class WorkerDraws(torch.utils.data.Dataset):
    """Each item: the worker's id and its first draws of torch, NumPy and Python's RNGs."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, item: tuple[int, int]) -> dict:
        info = torch.utils.data.get_worker_info()
        return {
            "worker": info.id,
            "torch": int(torch.randint(2**62, ())),
            "numpy": int(np.random.randint(2**62)),
            "python": random.getrandbits(62),
        }


def worker_draws(seed: int, epochs: int = 3, persistent: bool = False) -> list[tuple]:
    """(epoch, worker, torch, numpy, python) per item from the datamodule's train loader."""
    dm = SegmentationDataModule(
        "unused", batch_size=1, num_workers=2, persistent_workers=persistent, seed=seed
    )
    dm.datasets["train"] = WorkerDraws()
    loader = dm.train_dataloader()
    rows = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            draws = (int(batch[k][0]) for k in ("worker", "torch", "numpy", "python"))
            rows.append((epoch, *draws))
    return rows


@pytest.mark.parametrize("persistent", [False, True])
def test_worker_seeds_differ_by_worker_epoch_rank_and_seed_and_repeat_with_the_seed(
    persistent, monkeypatch
):
    rows = worker_draws(seed=3, persistent=persistent)
    assert {(r[0], r[1]) for r in rows} == {(e, w) for e in range(3) for w in range(2)}
    for column in (2, 3, 4):  # torch, NumPy, Python: no draw repeats across workers or epochs
        assert len({r[column] for r in rows}) == len(rows), column
    assert worker_draws(seed=3, persistent=persistent) == rows  # a function of the seed
    other = worker_draws(seed=4, persistent=persistent)
    assert not {r[2:] for r in other} & {r[2:] for r in rows}
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # the second process of a DDP run
    second = worker_draws(seed=3, persistent=persistent)
    assert not {r[2:] for r in second} & {r[2:] for r in rows}


def test_making_and_running_a_loader_leaves_the_models_random_stream_alone(voc_root):
    """Resuming makes the train loader anew; dropout must draw what it drew uninterrupted."""
    torch.manual_seed(0)
    expected = torch.rand(8)
    for workers in (0, 2):
        dm = SegmentationDataModule(
            str(voc_root), num_workers=workers, batch_size=2, crop_size=24, color_jitter=0.3
        )
        dm.setup("fit")
        torch.manual_seed(0)
        batches = list(dm.train_dataloader())
        assert len(batches) == 3
        assert torch.equal(torch.rand(8), expected), workers


def test_saved_rng_states_give_the_same_dropout_after_a_resume(tmp_path):
    dropout = torch.nn.Dropout(0.5)
    x = torch.ones(64)
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    torch.save(rng_states(), tmp_path / "rng.pt")  # as RNGState stores them in a checkpoint
    first = dropout(x), np.random.rand(), random.random()
    later = dropout(x)
    assert not torch.equal(first[0], later)  # the stream moves on: a replay is not trivial
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    replay = dropout(x), np.random.rand(), random.random()
    assert torch.equal(replay[0], first[0]) and replay[1:] == first[1:]

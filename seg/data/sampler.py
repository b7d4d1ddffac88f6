"""SeededSampler: the training order and every augmentation as pure functions of (seed, epoch)."""

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one sample's augmentation in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededSampler(DistributedSampler):
    """This rank's shuffled indices, each paired with the seed of its augmentation.

    ``DistributedSampler`` already makes the order a function of ``(seed, epoch)`` (Lightning
    calls ``set_epoch``; one process is rank 0 of 1). Pairing each index with its own seed makes
    the augmentation one too, so batches are the same for any number of loader workers, and a
    resumed run replays them exactly: nothing random lives in a process that a restart loses
    (StatefulDataLoader fast-forwards this sampler to the batch where a checkpoint was taken).
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in super().__iter__():
            yield index, sample_seed(self.seed, self.epoch, index)

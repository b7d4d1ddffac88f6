"""SeededSampler: the training order and every augmentation as pure functions of (seed, epoch).

Also what each loader process needs: ``worker_init`` (threads, seeding, Ctrl+C) and ``world``
(this process's rank under DDP).
"""

import signal
from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.distributed as dist
from lightning_fabric.utilities.seed import pl_worker_init_function
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


def worker_init(worker_id: int) -> None:
    """No OpenCV/torch threads per worker; Lightning's per-worker seeding; no Ctrl+C.

    Ctrl+C reaches every process of the terminal's group: the main process stops at the step's
    end (seg/checkpoint/interrupt.py) and needs its workers until then. SIGTERM keeps its
    default: the loader ends workers that do not stop with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(0)  # workers are the parallelism: avoid workers x cores threads
    torch.set_num_threads(1)
    pl_worker_init_function(worker_id)  # keeps seed_everything(workers=True) reproducible


def world() -> tuple[int, int]:
    """(world size, rank) of the initialised process group, else (1, 0)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0

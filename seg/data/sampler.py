"""SeededSampler: the training order and every augmentation as pure functions of (seed, epoch).

Also the loaders built on it (``train_loader``: stateful, so a mid-epoch checkpoint resumes the
same batches; ``eval_loader``: sequential and unpadded under DDP), what each loader process
needs (``worker_init``: threads, seeding, Ctrl+C) and ``world`` (this process's rank under DDP).
"""

import signal
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.distributed as dist
from lightning_fabric.utilities.seed import pl_worker_init_function
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

# torchdata 0.11 calls a torch function that torch 2.14 deprecates, on every loader it makes.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


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


def loader_options(workers: int, persistent: bool, pin_memory: bool, seed: int) -> dict:
    """The loader keywords shared by training and evaluation."""
    return dict(
        num_workers=workers,
        persistent_workers=persistent and workers > 0,
        pin_memory=pin_memory,
        worker_init_fn=worker_init if workers > 0 else None,
        # The workers' base seed comes from the loader's own generator, not torch's global
        # RNG, so that remaking an iterator on resume leaves the model's dropout unchanged.
        generator=torch.Generator().manual_seed(seed),
    )


def train_loader(
    dataset: Dataset, batch_size: int, seed: int, world_rank: tuple[int, int], **options
) -> StatefulDataLoader:
    """Shuffled by ``SeededSampler`` over this rank's shard (``world()``); whole batches only."""
    sampler = SeededSampler(dataset, *world_rank, shuffle=True, seed=seed)
    return StatefulDataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **options
    )


def eval_loader(
    dataset: Dataset, batch_size: int, collate_fn, world_rank: tuple[int, int], **options
) -> DataLoader:
    """Sequential; under DDP Lightning's unpadded sampler, so each image counts once."""
    size, rank = world_rank
    sampler = UnrepeatedDistributedSampler(dataset, size, rank, shuffle=False) if size > 1 else None
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, **options
    )

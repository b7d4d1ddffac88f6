"""Data health. Before anything is read, ``check_unique`` refuses a split listing an id twice and
``check_files`` one with missing files. During a run, ``DataCheck`` reads every training and
validation sample once before the first step, so a bad file stops the run at once with its
dataset error rather than hours later, and ``SkippedSamples`` counts the samples that fail in the
middle of a run and stops it past ``data.max_bad_samples``.
"""

import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytorch_lightning as pl

from seg.data.layouts import Sample
from seg.errors import DatasetError, DuplicateIdError, MissingFileError

log = logging.getLogger("seg")


class DataCheck(pl.Callback):
    """Read every train and validation sample once before training; raise the first error.

    A truncated JPEG, a colour mask, a mask of another size or a label out of range raises its
    ``DatasetError`` (naming the file) before any step runs or anything is written. The check
    reads with threads (decoders release the GIL); ``max_workers`` defaults to the CPU count.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        start, count = time.perf_counter(), 0
        pool = ThreadPoolExecutor(self.max_workers)
        try:
            for dataset in getattr(trainer.datamodule, "datasets", {}).values():
                read = getattr(dataset, "load", dataset.__getitem__)  # the raw sample, no transform
                for _ in pool.map(partial(discard, read), range(len(dataset))):
                    count += 1  # map re-raises a sample's error, in index order
        finally:
            pool.shutdown(cancel_futures=True)  # after an error, read no further
        log.info("data check: %d samples read in %.1f s", count, time.perf_counter() - start)


def discard(read, index: int) -> None:
    read(index)


class SkippedSamples(pl.Callback):
    """Count the training samples skipped as unreadable; stop past ``data.max_bad_samples``.

    Every skipped file is logged as it happens; the run stops (a ``DatasetError`` naming the
    files, after the last checkpoint) once more than ``max_bad_samples`` different ones failed.
    """

    def __init__(self) -> None:
        self.skipped: dict[str, None] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        for message in batch.get("skipped") or []:
            if message:
                self.skipped[message] = None
        allowed = getattr(trainer.datamodule, "max_bad_samples", 10)
        if len(self.skipped) > allowed:
            raise DatasetError(
                f"{len(self.skipped)} training samples could not be read, more than "
                f"data.max_bad_samples={allowed}; fix or remove them, then resume from the last "
                f"checkpoint. The first: " + "; ".join(list(self.skipped)[:3])
            )


def check_unique(samples: list[Sample], split: str) -> None:
    """Refuse a split that lists an id twice: it would count twice in every metric."""
    repeated = [i for i, n in Counter(s.id for s in samples).items() if n > 1]
    if repeated:
        raise DuplicateIdError(
            f"split {split!r} lists {len(repeated)} ids more than once (first: "
            f"{', '.join(repeated[:5])}); list each image once"
        )


def check_files(samples: list[Sample]) -> None:
    """Refuse a split whose images or masks are missing, naming the first few (before training)."""
    missing = [str(p) for s in samples for p in (s.image, s.mask) if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{len(missing)} image/mask files of the split are missing (first: "
            f"{', '.join(missing[:3])}); add them or remove their ids from the split file"
        )

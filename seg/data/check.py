"""``DataCheck``: every training and validation sample is read once before the first step, so a
bad file stops the run at once with its dataset error rather than hours later.
"""

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytorch_lightning as pl

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

"""What makes a training run safe to interrupt: atomic checkpoints, exact resume, early refusals.

- ``AtomicCheckpointIO`` writes each checkpoint to a temporary file in the same directory, syncs
  it and renames it over the old one, so a process killed mid-write leaves the previous file
  whole. It reads checkpoints with ``read_checkpoint`` (``weights_only``, clear errors).
- ``LoaderResume`` and ``RNGState`` make a run resumed from a mid-epoch checkpoint replay the
  same batches and random numbers (dropout) as an uninterrupted one.
- ``FiniteCheckpoints`` refuses to write weights holding NaN or inf.
- ``DataCheck`` reads every training and validation sample once before the first step, so a
  bad file stops the run at once with its dataset error rather than hours later.
"""

import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.plugins.io import TorchCheckpointIO

from seg.checkpoint import read_checkpoint

log = logging.getLogger("seg")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to ``.<name>.tmp`` beside the target, fsync, then ``os.replace``; read safely.

    Lightning's default stages the file in $TMPDIR and moves it: across filesystems the move is
    a copy into the target, and nothing is synced. A rename within one directory is atomic.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # fixed name: a killed write's leftover is reused
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. disk full: free the space, keep the old file
            raise
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # Always weights_only: resuming must never run code from the file.
        return read_checkpoint(path)


def rng_states() -> dict:
    """This process's torch, CUDA, NumPy and Python RNG states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


class RNGState(pl.Callback):
    """Save every rank's RNG states in checkpoints and restore them on resume.

    Lightning saves none. After a mid-epoch checkpoint the next random number is drawn by the
    next training step, so the states are set again just before that step: resuming creates the
    loader iterator anew, which draws a seed the uninterrupted run drew before the checkpoint.
    """

    def __init__(self) -> None:
        self.pending: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        states = rng_states()
        if dist.is_available() and dist.is_initialized():
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)  # every rank reaches this: same callbacks
        else:
            gathered = [states]
        mid_epoch = not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        checkpoint["rng_states"] = {"ranks": gathered, "mid_epoch": mid_epoch}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        saved = checkpoint.get("rng_states")
        if not saved or len(saved["ranks"]) != trainer.world_size:
            return  # another world size cannot replay the same numbers anyway
        states = saved["ranks"][trainer.global_rank]
        set_rng_states(states)
        self.pending = states if saved["mid_epoch"] else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.pending is not None:
            set_rng_states(self.pending)
            self.pending = None


class LoaderResume(pl.Callback):
    """Load the train loader's saved position on a mid-epoch resume (Lightning issue #20550).

    ``trainer.estimated_stepping_batches`` (the poly schedule's length) builds the train loader
    before the checkpoint is restored, and Lightning then never hands the saved loader state to
    it: the epoch would restart from its first batch. Here the state is loaded and the iterator
    made again, at the sampler's epoch, as Lightning's fix for that issue does. A no-op once
    Lightning loads the state itself.

    On a resume at an epoch boundary (after the last batch, before or after validation) the
    iterator is made again too, without the state: the early one was made at the sampler's
    default epoch, and loader workers had already prefetched that epoch's order.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        if trainer.ckpt_path is None or loop._data_fetcher is None:
            return
        restored = loop.restarting and loop._combined_loader_states_to_load
        if restored and not loop.epoch_loop.batch_progress.is_last_batch:  # mid-epoch
            loop._load_combined_loader_states()
        for loader in loop._combined_loader.flattened:
            for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(loop.epoch_progress.current.processed)
        iter(loop._data_fetcher)  # a fresh iterator, from the restored state


class LastCheckpoint(pl.callbacks.ModelCheckpoint):
    """``checkpoints/last.ckpt`` after every epoch: Lightning's ModelCheckpoint keeping the one
    newest checkpoint under the name ``last``.

    (``save_last`` alone will not do: Lightning 2.6 writes the last checkpoint only at steps where
    a top-k one was saved, and at the end of training; the ``steps`` callback's ``save_last``
    gives that end-of-training save, for runs stopped mid-epoch by max_steps or max_time.) A class
    of its own so that its state key differs from the periodic checkpoint's, which Lightning would
    otherwise refuse as a duplicate when both save every epoch.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1) -> None:
        super().__init__(
            dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            every_n_epochs=every_n_epochs,
            save_top_k=1,
            enable_version_counter=False,
        )


class FiniteCheckpoints(pl.Callback):
    """Refuse to write a checkpoint whose weights hold NaN or inf: the last good one stays."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            lr = pl_module.hparams.get("lr", "?")
            raise FloatingPointError(
                f"the weights became non-finite (NaN/inf in {len(bad)} tensors, first "
                f"{', '.join(bad[:3])}) by step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}); this checkpoint was not written and the earlier "
                f"ones are kept. Try a lower model.lr (now {lr}), model.loss_reduction=mean or "
                f"trainer.precision=32-true, then resume from checkpoints/last.ckpt."
            )


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

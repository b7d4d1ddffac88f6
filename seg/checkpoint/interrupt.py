"""Stopping on SIGINT or SIGTERM: ``last.ckpt`` at the next step's end, then a non-zero exit.

Schedulers send SIGTERM before they kill a job, and Ctrl+C sends SIGINT. Either is honoured at
the end of the training step in progress (after validation, when it arrives during one): the
state written there is a step checkpoint's, which resumes exactly. ``Interrupted`` then leaves
``trainer.fit``, and the entry point prints the resume command and exits with 128 + the signal
number (130 for SIGINT, 143 for SIGTERM), so that a scheduler records the job as stopped, not
done. A second Ctrl+C stops at once. SIGUSR1, with which Lightning's SLURM auto-requeue works,
is left to Lightning.
"""

import signal
from pathlib import Path

import pytorch_lightning as pl

from seg.checkpoint.write import LastCheckpoint
from seg.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)


class GracefulStop(pl.Callback):
    """Turn SIGINT and SIGTERM into ``last.ckpt`` plus ``Interrupted`` at a step's end."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        # Set after Lightning's own SIGTERM handler, which would stop without a checkpoint.
        self.received = None
        self.previous = {s: signal.getsignal(s) for s in HANDLED}
        for signum in HANDLED:
            signal.signal(signum, self.note)

    def note(self, signum: int, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl+C: at once
        self.received = signum
        if signum == signal.SIGINT:
            print("\nStopping after this step (Ctrl+C again to stop at once) ...", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank writes its part of the checkpoint: agree first
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop or trainer.global_step >= trainer.max_steps > 0:
            return  # nothing received, or this was the last step anyway
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        raise Interrupted(self.received or signal.SIGTERM, trainer.global_step, path)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ``LastCheckpoint`` writes; ``<default_root_dir>/checkpoints/`` without one."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / "last.ckpt"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

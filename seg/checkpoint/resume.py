"""Resuming: exact training state back (RNG, loader position), today's settings applied.

``check_resume`` refuses, before anything runs, a checkpoint that cannot continue this run.
``RNGState`` and ``LoaderResume`` make a run resumed from a mid-epoch checkpoint replay the same
batches and random numbers (dropout) as an uninterrupted one. ``ResumeSettings`` applies the
optimizer settings of the command line (e.g. a lower ``model.lr`` after a divergence) instead of
the checkpoint's, so the hyperparameters recorded are the ones in effect.
"""

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from seg.checkpoint.read import read_checkpoint
from seg.errors import CheckpointError

# Settings that make a checkpoint another model or another optimizer, or move its batch norm
# statistics at another rate (a checkpoint from before model.bn_momentum has None, the
# backbone's own): no resume across them, so that a resumed run continues exactly.
SAME_ON_RESUME = ("arch", "backbone", "num_classes", "optimizer", "bn_momentum")
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "pytorch-lightning_version")


def check_resume(path: str | Path, hparams: dict) -> None:
    """Refuse ``ckpt_path`` when it holds no training state or another model / optimizer."""
    checkpoint = read_checkpoint(path, mmap=True)
    missing = [k for k in TRAINING_STATE if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path={path} holds the weights but not a training state (no "
            f"{', '.join(missing)}): best and periodic checkpoints keep only what evaluation "
            f"needs. Resume from <run dir>/checkpoints/last.ckpt, or start a new run from these "
            f"weights with init_from={path}"
        )
    saved = checkpoint["hyper_parameters"]
    differ = [
        f"model.{k} {saved.get(k)!r} -> {hparams.get(k)!r}"
        for k in SAME_ON_RESUME
        if saved.get(k) != hparams.get(k)
    ]
    if differ:
        raise CheckpointError(
            f"ckpt_path={path} cannot resume this run: {'; '.join(differ)} (checkpoint -> "
            f"now). Resuming continues the same model and optimizer; set these back, or start "
            f"from that model's weights with init_from={path} (matching tensors are copied)"
        )


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


# --- The one place that touches Lightning's private attributes: a workaround for Lightning
# --- issue #20550 (https://github.com/Lightning-AI/pytorch-lightning/issues/20550).
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

    Under ``max_steps`` with ``max_epochs=-1`` the schedule's length needs no loader: Lightning
    builds it after the restore and loads the position itself, but into an iterator made before
    the sampler's epoch is set. So the saved position is kept from the checkpoint and loaded
    again, after the epoch, in both cases.
    """

    def __init__(self) -> None:
        self.states: list | None = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Kept here: Lightning drops its copy once it has loaded it into a loader.
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self.states = fit_loop.get("state_dict", {}).get("combined_loader")

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        if trainer.ckpt_path is None or loop._data_fetcher is None:
            return
        epoch = loop.epoch_progress.current.processed
        if loop.restarted_on_epoch_end and loop._iteration_based_training():
            # Under max_steps, Lightning replays the end of an epoch whose checkpoint was written
            # in on_train_epoch_end and counts it as processed a second time: every later epoch
            # would get the next epoch's sampler order (Lightning issue #19617's family).
            loop.epoch_progress.current.processed -= 1
            loop.epoch_progress.total.processed -= 1
        for loader in loop._combined_loader.flattened:
            for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
        if self.states and not loop.epoch_loop.batch_progress.is_last_batch:  # mid-epoch
            loop._combined_loader._load_state_dicts(self.states)
        self.states = None
        iter(loop._data_fetcher)  # a fresh iterator, from the restored state


class ResumeSettings(pl.Callback):
    """On resume, keep the restored optimizer state but apply this run's optimizer settings.

    Lightning restores the param groups (lr, momentum, weight decay) and the schedule's base
    learning rates from the checkpoint, silently overriding the command line. The freshly built
    values are noted after ``configure_optimizers`` and before the restore (``on_fit_start``),
    and set again once training starts; the current lr keeps its place in the schedule.
    """

    def __init__(self) -> None:
        self.fresh: list | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fresh = None
        if trainer.ckpt_path:
            groups = [[dict(g) for g in opt.param_groups] for opt in trainer.optimizers]
            bases = [list(c.scheduler.base_lrs) for c in trainer.lr_scheduler_configs]
            self.fresh = [groups, bases]

    def on_train_start(self, trainer, pl_module) -> None:
        if self.fresh is None:
            return
        groups, bases = self.fresh
        configs = trainer.lr_scheduler_configs
        for opt, fresh_groups in zip(trainer.optimizers, groups, strict=True):
            for group, fresh in zip(opt.param_groups, fresh_groups, strict=True):
                old, new = group.get("initial_lr"), fresh.get("initial_lr")
                ratio = new / old if old and new else 1.0
                group.update({k: v for k, v in fresh.items() if k not in ("params", "lr")})
                group["lr"] *= ratio  # same point of the schedule, new base
        for config, fresh_bases in zip(configs, bases, strict=True):
            config.scheduler.base_lrs = list(fresh_bases)
        self.fresh = None

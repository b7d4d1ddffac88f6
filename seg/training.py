"""Training by wall-clock budget and by effective batch size, on top of Lightning's Trainer.

``trainer.budget=20m`` trains until the budget is spent (Lightning's ``Timer``, whose elapsed time
is saved in every checkpoint, so a resumed run continues the same budget), decays the poly
schedule over the elapsed fraction of the budget instead of over steps, and validates the epoch it
stops in. ``data.effective_batch_size`` fixes the batch the optimiser sees:
``accumulate_grad_batches = effective / (batch_size * devices * nodes)``.
"""

import re
from datetime import timedelta

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

from seg.config import ConfigError
from seg.module import poly_factor

UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | int | float) -> float:
    """``"90s"``, ``"20m"``, ``"1.5h"`` (a bare number is seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"trainer.budget={text!r} is not a duration; write a positive number with s, m or h, "
            f"e.g. trainer.budget=20m or trainer.budget=1.5h"
        )
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def accumulation(effective: int, batch_size: int, devices: int, nodes: int = 1) -> int:
    """Batches to accumulate so that each optimiser step sees ``effective`` samples."""
    per_step = batch_size * devices * nodes
    if effective <= 0 or effective % per_step:
        raise ConfigError(
            f"data.effective_batch_size={effective} is not a positive multiple of data.batch_size "
            f"({batch_size}) x devices ({devices}) x nodes ({nodes}) = {per_step}; choose a "
            f"multiple of {per_step} or change data.batch_size"
        )
    return effective // per_step


class Budget(Timer):
    """Stop at a wall-clock budget, with poly decay over its elapsed fraction.

    The module's LambdaLR keeps its warm-up; only the decay's clock changes. Stopping asks for
    one last validation even when ``check_val_every_n_epoch`` would skip this epoch, so the best
    and last checkpoints score the final weights.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(duration=timedelta(seconds=seconds), interval="step")
        self.seconds = seconds

    def progress(self) -> float:
        return min(1.0, self.time_elapsed("train") / self.seconds)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        super().on_train_start(trainer, module)

        def factor(it: int) -> float:
            return poly_factor(it, 1, module.hparams, progress=self.progress())

        for config in trainer.lr_scheduler_configs:
            config.scheduler.lr_lambdas = [factor] * len(config.scheduler.lr_lambdas)

    def on_train_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        super().on_train_batch_end(trainer, *args, **kwargs)
        if trainer.should_stop:
            trainer.check_val_every_n_epoch = 1  # validate the epoch the budget ends in

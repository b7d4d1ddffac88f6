"""Training by wall-clock budget and by effective batch size, on top of Lightning's Trainer.

``trainer.budget=20m`` times the warm-up steps on this machine, then fixes the number of steps
that fills the budget, validations included (``Budget``); the poly schedule decays over that
number, a resumed run keeps it, and ``trainer.max_steps=<steps>`` repeats the run exactly.
``data.effective_batch_size`` fixes the batch the optimiser sees:
``accumulate_grad_batches = effective / (batch_size * devices * nodes)``.
"""

import json
import logging
import re
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from seg.errors import ConfigError

log = logging.getLogger("seg")

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


def cpu_has_bf16() -> bool:
    """Whether /proc/cpuinfo lists native bf16 arithmetic (avx512_bf16 or amx_bf16): where it
    does not, bf16 autocast is emulated and slower than fp32 (precision auto-mixed, the plan)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


class Budget(pl.Callback):
    """Fill a wall-clock budget with a number of steps fixed once, after the warm-up.

    The learning rate of the ``warmup_iters`` warm-up steps does not depend on the schedule's
    length, so they are timed as they train (after ``SKIP`` steps of start-up); with the time of
    one validation, measured on a few validation images, the step count that ends training and
    its validations within the budget is fixed then, rounded down to a multiple of ``ROUND``, and
    becomes ``max_steps``: the poly schedule decays over it from there. The plan (speed, step
    count) is printed, saved in checkpoints and ``<run>/budget.json``; the same run again with
    ``trainer.max_steps=<steps>`` (the budget then only records) repeats it exactly. Either
    way the last step is validated, whatever ``check_val_every_n_epoch`` says.
    """

    SKIP, ROUND, MIN_WARMUP = 3, 10, 10

    def __init__(self, seconds: float, run_dir: str | None = None) -> None:
        self.seconds, self.run_dir = seconds, run_dir
        self.plan: dict | None = None
        self.started = time.monotonic()
        self.marks: dict[int, float] = {}
        self.resumed = False  # a resumed run's clock started again: it records no seconds taken

    def state_dict(self) -> dict:
        return {"plan": self.plan}

    def load_state_dict(self, state: dict) -> None:
        self.plan, self.resumed = state.get("plan"), True

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.max_steps > 0 and self.plan is None:
            self.plan = {"steps": trainer.max_steps, "given": True}  # a rerun of a plan
        if self.plan is not None:
            trainer.fit_loop.epoch_loop.max_steps = self.plan["steps"]
        elif module.hparams.warmup_iters < self.MIN_WARMUP:
            raise ConfigError(
                f"trainer.budget times the warm-up steps to fix the number of steps, but "
                f"model.warmup_iters={module.hparams.warmup_iters}; set it to at least "
                f"{self.MIN_WARMUP} (the CamVid recipe uses 50)"
            )

    def on_train_batch_end(self, trainer: pl.Trainer, module, *args, **kwargs) -> None:
        step = trainer.global_step
        if self.plan is None:
            self.marks[step] = time.monotonic()
            # The scheduler sets step s's rate before this hook at step s: plan one step early.
            if step >= module.hparams.warmup_iters - 1:
                self.plan = self.make_plan(trainer, module)
                trainer.fit_loop.epoch_loop.max_steps = self.plan["steps"]
                report(self.plan, self.run_dir)
        if step >= trainer.max_steps > 0:  # validate the last step: stop "early" there
            trainer.should_stop = True
            trainer.check_val_every_n_epoch = 1

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Record the seconds training and its validations took against the budget."""
        if self.plan is None or self.plan.get("given") or self.resumed:
            return
        self.plan["seconds_taken"] = round(time.monotonic() - self.started, 1)
        log.info(
            "trainer.budget=%ss: training and its validations took %.1f s (%+.0f %%)",
            self.seconds, self.plan["seconds_taken"],
            100 * (self.plan["seconds_taken"] / self.seconds - 1),
        )  # fmt: skip
        save(self.plan, self.run_dir)

    def make_plan(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict:
        steps = sorted(self.marks)
        first = steps[min(self.SKIP, len(steps) - 2)]
        per_step = (self.marks[steps[-1]] - self.marks[first]) / (steps[-1] - first)
        per_validation = validation_seconds(trainer, module)
        left = self.seconds - (time.monotonic() - self.started)
        per_epoch = max(1, int(trainer.num_training_batches // trainer.accumulate_grad_batches))
        every = (trainer.check_val_every_n_epoch or 1) * per_epoch
        done, total = steps[-1], steps[-1] + int(left / per_step)
        while (
            total > done
            and (total - done) * per_step + validations(total, every) * per_validation > left
        ):
            total -= 1
        total = max(done + 1, total - total % self.ROUND)
        return {
            "steps": total, "budget_seconds": self.seconds,
            "seconds_per_step": round(per_step, 4),
            "seconds_per_validation": round(per_validation, 2),
            "validations": validations(total, every), "timed_steps": [first, steps[-1]],
        }  # fmt: skip


def validations(steps: int, every: int) -> int:
    """Validations in ``steps``: every ``every`` steps, plus the last step's."""
    return steps // every + (1 if steps % every else 0)


def validation_seconds(trainer: pl.Trainer, module: pl.LightningModule, images: int = 2) -> float:
    """One validation's seconds, from the first ``images`` validation images (after one)."""
    loop = trainer.fit_loop.epoch_loop.val_loop
    loop.setup_data()
    loader = trainer.val_dataloaders
    if loader is None or trainer.limit_val_batches == 0:
        return 0.0
    dataset, flip = loader.dataset, module.hparams.get("eval_flip", False)
    count = min(len(dataset), images + 1)
    module.eval()
    times = []
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        for i in range(count):
            start = time.monotonic()
            batch = loader.collate_fn([dataset[i]])
            module(batch["image"])
            if flip:
                module(batch["image"].flip(-1))
            times.append(time.monotonic() - start)
    module.train()
    per_image = sum(times[1:]) / max(1, len(times) - 1) if len(times) > 1 else times[0]
    return per_image * len(dataset) * 1.1  # metrics, logging and loader start-up


def report(plan: dict, run_dir: str | None) -> None:
    """Print the plan and write it to ``<run_dir>/budget.json``."""
    log.info(
        "trainer.budget=%ss: %.3f s per step (steps %d-%d), %.1f s per validation: training "
        "for %d steps with %d validations. The same run again: trainer.max_steps=%d",
        plan["budget_seconds"], plan["seconds_per_step"], *plan["timed_steps"],
        plan["seconds_per_validation"], plan["steps"], plan["validations"], plan["steps"],
    )  # fmt: skip
    save(plan, run_dir)


def save(plan: dict, run_dir: str | None) -> None:
    """Write the plan to ``<run_dir>/budget.json``."""
    if run_dir:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "budget.json").write_text(json.dumps(plan, indent=2) + "\n")

"""``RunSummary``: what a finished run leaves for its user, written once training (and the test,
when one follows) has ended.

- TensorBoard's HPARAMS tab: the hyperparameters beside the final val (and test) metrics;
- the trackers (MLflow, W&B, CSV): where the best checkpoint is;
- the terminal: the run directory, the best checkpoint and the commands to run next.
"""

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from seg.report.tensorboard import log_hparams


def best_checkpoint(trainer: pl.Trainer) -> str:
    """The best checkpoint's path ("" when none was kept)."""
    callback = trainer.checkpoint_callback
    return callback.best_model_path if callback else ""


class RunSummary(pl.Callback):
    """Report the run when it is done: after ``fit``, or after ``test`` when ``test`` follows."""

    def __init__(self, run_dir: str, test: bool = False) -> None:
        self.run_dir, self.test = run_dir, test
        self.final: list[str] = []

    def final_metrics(self, trainer: pl.Trainer, prefix: str) -> list[str]:
        metrics = trainer.callback_metrics.items()
        return [k for k, v in metrics if k.startswith(prefix) and v.numel() == 1]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.final = self.final_metrics(trainer, "val/")
        best = best_checkpoint(trainer)
        for logger in trainer.loggers:  # TensorBoard shows checkpoints beside its run already
            if best and not isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams({"best_checkpoint": best})
        if not self.test:
            self.finish(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.test:
            self.final += self.final_metrics(trainer, "test/")
            self.finish(trainer, pl_module)

    def finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # The HPARAMS tab reads the metrics' own last values: no copies in Scalars.
                log_hparams(logger.experiment, dict(pl_module.hparams), self.final)
        if trainer.is_global_zero:
            tensorboard = any(isinstance(x, TensorBoardLogger) for x in trainer.loggers)
            print(closing_lines(self.run_dir, best_checkpoint(trainer), tensorboard))


def closing_lines(run_dir: str, best: str, tensorboard: bool = True) -> str:
    """Where the run is, and what to run next (TensorBoard only when it is logging)."""
    lines = ["", f"Run directory: {run_dir}"]
    if best:
        lines += [f"Best checkpoint: {best}"]
    if tensorboard:
        lines += [f"TensorBoard: tensorboard --logdir {run_dir}"]
    if best:
        lines += [
            "Next:",
            f"  python evaluate.py ckpt_path={best}  # scores, report.html",
            f"  python predict.py ckpt_path={best} input=<image or folder>",
            f"  python export.py ckpt_path={best}  # ONNX with its pre- and post-processing",
        ]
    return "\n".join(lines)

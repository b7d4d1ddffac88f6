"""What TensorBoard shows beside the logged scalars: validation panels, confusion figure, hparams.

``ValidationPanels`` is an observer: it reads the predictions that
``SegmentationModule.validation_step`` returns and the module's validation confusion matrix; the
module itself draws nothing. ``log_hparams`` writes the hyperparameters for the HPARAMS tab,
naming the final metrics by their existing tags (``val/mIoU``...) instead of copying them into
new single-point scalars that would fill the Scalars tab.
"""

import numpy as np
import pytorch_lightning as pl
from torch import Tensor

from seg.report.draw import denormalise, legend_panel
from seg.report.figures import confusion_figure


def panel_positions(size: int, count: int) -> list[int]:
    """``count`` positions evenly spaced over ``0..size-1``, first and last included."""
    if size <= 0 or count <= 0:
        return []
    return sorted({round(p) for p in np.linspace(0, size - 1, min(count, size))})


def tensorboard_writer(trainer: pl.Trainer):
    """The SummaryWriter of the run's TensorBoard logger on rank 0, outside the sanity check."""
    if trainer.sanity_checking or not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if hasattr(logger.experiment, "add_image"):
            return logger.experiment
    return None


class ValidationPanels(pl.Callback):
    """Panels of ``num_images`` validation images, evenly spaced and fixed, and the confusion.

    The images are chosen once from the validation set's length (positions in loader order,
    which is not shuffled) and tagged ``val/prediction/<id>``. Under DDP rank 0 draws the
    chosen positions that its own share of the set holds.
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images
        self.positions: set[int] | None = None
        self.seen = 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = 0
        if self.positions is None:
            size = len(trainer.val_dataloaders.dataset)
            self.positions = set(panel_positions(size, self.num_images))

    def on_validation_batch_end(
        self, trainer, pl_module, outputs: Tensor, batch: dict, batch_idx: int, dataloader_idx=0
    ) -> None:
        start, self.seen = self.seen, self.seen + len(batch["mask"])
        writer = tensorboard_writer(trainer)
        if writer is None or not self.positions:
            return
        hp = pl_module.hparams
        for i in range(len(batch["mask"])):
            if start + i not in self.positions:
                continue
            image = denormalise(batch["image"][i], hp.mean, hp.std)
            picture = legend_panel(
                image,
                batch["mask"][i],
                outputs[i],
                pl_module.class_names,
                pl_module.palette,
                hp.ignore_index,
            )
            tag = f"val/prediction/{batch['id'][i]}"
            writer.add_image(tag, picture, trainer.global_step, dataformats="HWC")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        matrix = pl_module.val_matrix.compute()  # every rank: the sum across ranks is collective
        writer = tensorboard_writer(trainer)
        if writer is not None:
            title = f"validation, epoch {trainer.current_epoch}, step {trainer.global_step}"
            figure = confusion_figure(matrix, pl_module.class_names, title)
            writer.add_figure("val/confusion_matrix", figure, trainer.global_step)


def flat_hparams(params: dict, prefix: str = "") -> dict:
    """Nested hyperparameters as one level of ``a/b`` keys with TensorBoard-storable values."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat |= flat_hparams(value, f"{prefix}{key}/")
        else:
            ok = isinstance(value, bool | int | float | str)
            flat[f"{prefix}{key}"] = value if ok else str(value)
    return flat


def log_hparams(writer, params: dict, metric_tags: list[str]) -> None:
    """The HPARAMS-tab summary: ``params`` beside the metrics already logged under these tags."""
    from torch.utils.tensorboard.summary import hparams

    experiment, start, end = hparams(flat_hparams(params), dict.fromkeys(metric_tags, 0.0))
    file_writer = writer._get_file_writer()  # reopens it after the trainer closed it, as Lightning
    for summary in (experiment, start, end):
        file_writer.add_summary(summary)
    file_writer.flush()

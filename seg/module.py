"""SegmentationModule: per-pixel cross-entropy training with epoch-level confusion-matrix metrics.

Everything the module knows arrives as plain constructor values (class names, palette, class
weights, mean/std for display), so ``save_hyperparameters()`` holds only plain Python values and
``SegmentationModule.load_from_checkpoint(path)`` works without Hydra or data code, under torch's
``weights_only=True`` loading.
"""

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from seg.config import check_model
from seg.evaluation import evaluate_batch
from seg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from seg.losses import LossOptions, build_loss
from seg.metrics import ConfusionMatrix, scores
from seg.models import build_model


def default_palette() -> list[list[int]]:
    """Distinct colours for class indices without a palette of their own."""
    return [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(256)]


class SegmentationModule(pl.LightningModule):
    """Train a ``build_model(arch, backbone, num_classes)`` network; log loss and mIoU per epoch.

    Loss ``reduction="sum"`` with SGD, ``lr=1e-10``, ``momentum=0.99`` and batch 1 is the FCN
    paper's recipe; ``bias_lr_factor=2`` with ``bias_weight_decay=False`` is its bias treatment.
    The learning rate follows ``(1 - it / max_it) ** poly_power`` per iteration after an optional
    linear warm-up. ``eval_scale`` resizes validation images before the network (for models
    trained on downscaled crops) and scores the upsampled logits against native-size masks;
    ``eval_flip`` averages each validation image's logits with its mirror image's.
    ``aux_weight`` > 0 adds deep supervision to FCN-16s/8s: the training loss also scores the
    coarser FCN-32s (and FCN-16s) predictions, upsampled, each weighted ``aux_weight``.
    """

    def __init__(
        self,
        arch: str = "fcn8s",
        backbone: str = "vgg16",
        num_classes: int = 21,
        weights: str | None = None,
        weights_required: bool = False,
        freeze_upsampler: bool = False,
        class_names: list[str] | None = None,
        palette: list[list[int]] | None = None,
        mean: list[float] = IMAGENET_MEAN,
        std: list[float] = IMAGENET_STD,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        loss: str | dict[str, float] = "ce",
        loss_reduction: str = "mean",
        label_smoothing: float = 0.0,
        ohem_thresh: float = 0.7,
        ohem_min_kept: int = 100_000,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        bias_lr_factor: float = 1.0,
        bias_weight_decay: bool = True,
        warmup_iters: int = 0,
        poly_power: float = 0.9,
        channels_last: bool | str = "auto",
        compile: bool = False,
        compile_mode: str = "default",
        optimizer_impl: str = "auto",
        eval_scale: float = 1.0,
        eval_flip: bool = False,
        in_channels: int = 3,
        bn_momentum: float | None = None,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_model(dict(self.hparams), num_classes)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.palette = palette or default_palette()
        self.model = build_model(
            arch, backbone, num_classes, weights, weights_required, freeze_upsampler, in_channels,
            bn_momentum,
        )  # fmt: skip
        if channels_last is True:
            self.model.to(memory_format=torch.channels_last)
        if aux_weight > 0:  # check_model allows it for FCN-16s/8s only
            self.model.decoder.keep_coarse = True
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weight", weight, persistent=False)
        options = LossOptions(ignore_index, class_weights, loss_reduction, label_smoothing,
                              ohem_thresh, ohem_min_kept)  # fmt: skip
        self.criterion = build_loss(loss, options)
        self.train_matrix = ConfusionMatrix(num_classes, ignore_index)  # of the augmented crops
        self.val_matrix = ConfusionMatrix(num_classes, ignore_index)
        self.test_matrix = ConfusionMatrix(num_classes, ignore_index)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self._compiled = None
        self._epoch_steps: float | None = None

    def nhwc(self) -> bool:
        """channels_last: true, false, or auto (on CUDA, where tensor cores want NHWC)."""
        setting = self.hparams.channels_last
        return setting is True or (setting == "auto" and self.device.type == "cuda")

    def on_fit_start(self) -> None:
        if self.hparams.channels_last == "auto" and self.nhwc():  # now on its device
            self.model.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        if self.nhwc():
            images = images.contiguous(memory_format=torch.channels_last)
        if self.hparams.compile and self._compiled is None:
            # Kept out of the module tree so that state_dict keys stay those of self.model.
            compiled = torch.compile(self.model, mode=self.hparams.compile_mode)
            object.__setattr__(self, "_compiled", compiled)
        return (self._compiled or self.model)(images)

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """The training loss, ``model.loss`` (seg/losses.py); validation reports cross-entropy."""
        return self.criterion(logits, masks)

    def deep_supervision(self, masks: Tensor) -> Tensor | float:
        """``aux_weight`` times the loss of each coarser FCN prediction of the last forward."""
        coarse, self.model.decoder.coarse = self.model.decoder.coarse, {}
        h, w = masks.shape[-2:]
        total = 0.0
        for stride, logits in coarse.items():  # padded input: H' = stride * h', cropped back
            up = F.interpolate(logits, scale_factor=stride, mode="bilinear", align_corners=False)
            total = total + self.loss(up[..., :h, :w], masks)
        return self.hparams.aux_weight * total

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["mask"])
        if self.hparams.get("aux_weight", 0):
            loss = loss + self.deep_supervision(batch["mask"])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at step {self.global_step} "
                f"(epoch {self.current_epoch}); nothing was saved from this step. Try a lower "
                f"model.lr (now {self.hparams.lr}), model.loss_reduction=mean, or "
                f"trainer.precision=32-true, then resume from the last checkpoint."
            )
        self.log("train/loss", loss, on_step=True, prog_bar=True)
        self.train_matrix.update(logits.detach(), batch["mask"])
        return loss

    def on_train_epoch_end(self) -> None:
        """train/mIoU: the epoch's augmented crops as the network saw them (DDP-summed)."""
        self.log("train/mIoU", float(scores(self.train_matrix.compute())["mIoU"]))
        self.train_matrix.reset()

    def _eval_step(self, stage: str, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Update the stage's loss and confusion matrix; return the predictions ``(N, H, W)``.

        Scored at the labels' native resolution, whatever scale the network sees. The returned
        predictions are what drawing callbacks (``seg.drawing``) read.
        """
        masks = batch["mask"]
        matrix = getattr(self, f"{stage}_matrix")
        scale, flip = (self.hparams.eval_scale,), self.hparams.get("eval_flip", False)
        logits, preds = evaluate_batch(self, batch["image"], masks, matrix, scales=scale, flip=flip)
        valid = (masks != self.hparams.ignore_index).sum()
        loss = F.cross_entropy(
            logits.float(), masks, weight=self.class_weight, ignore_index=self.hparams.ignore_index
        )
        if valid > 0:
            getattr(self, f"{stage}_loss").update(loss, weight=valid)
        return preds

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step("val", batch, batch_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step("test", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        """Log scores from the epoch's (DDP-summed) confusion matrix, computed once."""
        matrix_metric = getattr(self, f"{stage}_matrix")
        loss_metric = getattr(self, f"{stage}_loss")
        matrix = matrix_metric.compute()
        result = scores(matrix)
        values = {f"{stage}/{k}": result[k] for k in ("pixel_acc", "mean_acc", "fwIoU")}
        if loss_metric.weight.sum() > 0:
            values[f"{stage}/loss"] = loss_metric.compute()
        for name, iou in zip(self.class_names, result["iou"], strict=True):
            if not math.isnan(iou):
                values[f"{stage}/iou/{name}"] = iou
        # Already summed across ranks by torchmetrics: no sync_dist here.
        self.log_dict({k: float(v) for k, v in values.items()}, prog_bar=False)
        self.log(f"{stage}/mIoU", float(result["mIoU"]), prog_bar=True)
        matrix_metric.reset()
        loss_metric.reset()

    def configure_optimizers(self):
        hp = self.hparams
        decay, bias = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (bias if name.endswith(".bias") else decay).append(p)
        groups = [
            {"params": decay},
            {
                "params": bias,
                "lr": hp.lr * hp.bias_lr_factor,
                "weight_decay": hp.weight_decay if hp.bias_weight_decay else 0.0,
            },
        ]
        impl = optimizer_impl_kwargs(hp.optimizer_impl)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, **impl
            )
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay, **impl)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda it: poly_factor(it, self.schedule_length(), hp)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def schedule_length(self) -> float:
        """Steps the poly schedule decays over: ``max_steps`` when set, else the epochs' steps.

        Read at every step, so that a time budget (seg/training.py), which sets ``max_steps``
        after the warm-up, sets the schedule with it; inf (no decay) until something is set.
        """
        trainer = self.trainer
        if self._epoch_steps is None:
            self._epoch_steps = trainer.estimated_stepping_batches  # inf without max_epochs
        return min(trainer.max_steps if trainer.max_steps > 0 else math.inf, self._epoch_steps)


def poly_factor(it: int, total: float, hp) -> float:
    """Linear warm-up for ``warmup_iters`` steps, then ``(1 - it / total) ** poly_power``.

    The warm-up does not depend on ``total``: a time budget (seg/training.py) measures the
    machine's speed during it and only then fixes ``total``.
    """
    if it < hp.warmup_iters:
        return (it + 1) / hp.warmup_iters
    return max(0.0, 1.0 - it / total) ** hp.poly_power


def optimizer_impl_kwargs(impl: str) -> dict[str, bool]:
    """The ``foreach`` / ``fused`` arguments of torch's SGD and AdamW for ``optimizer_impl``."""
    return {
        "auto": {},
        "for_loop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
    }[impl]

"""Evaluation: one function for infer -> argmax -> confusion update, and per-image scores.

``SegmentationModule``'s validation/test step and ``evaluate.py`` both call ``evaluate_batch``,
so the numbers training logs and the numbers evaluation reports come from the same code.
Per-image scores use the same formulas as ``seg.metrics.scores`` on one image's confusion
matrix: the per-image mIoU averages the classes present in the truth or the prediction.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from seg.inference import infer
from seg.metrics import ConfusionMatrix, scores


def evaluate_batch(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    masks: Tensor,
    matrix: ConfusionMatrix,
    **options,
) -> tuple[Tensor, Tensor]:
    """Logits ``(N, K, H, W)`` from ``infer(model, images, **options)`` and preds ``(N, H, W)``.

    The predictions are added to ``matrix`` against ``masks`` (255 ignored) before returning.
    """
    logits = infer(model, images, **options)
    preds = logits.argmax(dim=1)
    matrix.update(preds, masks)
    return logits, preds


def image_matrices(preds: Tensor, masks: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """One confusion matrix per image: ``(N, H, W)`` preds and masks -> ``(N, K, K)``."""
    k = num_classes
    keep = masks != ignore_index
    image = torch.arange(len(masks), device=masks.device).view(-1, 1, 1).expand_as(masks)
    codes = (image * k + masks) * k + preds  # (image, truth, prediction) as one integer
    counts = torch.bincount(codes[keep], minlength=len(masks) * k * k)
    return counts.view(len(masks), k, k)


def image_scores(matrix: Tensor, class_names: list[str]) -> dict:
    """Pixel accuracy, mIoU over the classes present, per-class IoU (None if absent), worst class.

    The worst class is the present class of lowest IoU (the first such in class order on ties).
    """
    result = scores(matrix)
    iou = [None if torch.isnan(v) else float(v) for v in result["iou"]]
    present = [(v, name) for v, name in zip(iou, class_names, strict=True) if v is not None]
    pixel_acc, miou = float(result["pixel_acc"]), float(result["mIoU"])
    return {
        "pixel_acc": None if matrix.sum() == 0 else pixel_acc,
        "mIoU": None if not present else miou,
        "worst_class": min(present, key=lambda p: p[0])[1] if present else None,
        "iou": dict(zip(class_names, iou, strict=True)),
    }

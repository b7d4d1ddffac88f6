"""Segmentation scores from one confusion matrix accumulated over a whole epoch.

The formulas are those of Long et al., "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015, section 5), with ``n[i, j]`` the number of pixels of class ``i`` predicted as ``j`` and
``t[i] = sum_j n[i, j]`` the number of pixels of class ``i``:

- pixel accuracy      ``sum_i n[i, i] / sum_i t[i]``
- mean accuracy       ``mean_i n[i, i] / t[i]``
- mean IoU            ``mean_i n[i, i] / (t[i] + sum_j n[j, i] - n[i, i])``
- frequency-weighted  ``sum_i t[i] * IoU[i] / sum_i t[i]``

Classes absent from both the ground truth and the predictions have no defined IoU; they are left
out of the means (reported as NaN per class). Classes absent from the ground truth are left out of
the mean accuracy.
"""

import torch
from torch import Tensor
from torchmetrics import Metric


class ConfusionMatrix(Metric):
    """A ``(K, K)`` confusion matrix (rows: truth, columns: prediction) summed across DDP ranks.

    ``update`` is a single ``torch.bincount`` on the device: no host sync per step, and no
    ``pixels x K^2`` one-hot path (torchmetrics' own matrix takes one in deterministic mode).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.add_state("matrix", default=matrix, dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add ``preds`` (class indices or ``(N, K, ...)`` logits) against ``target`` indices."""
        if preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=1)
        keep = target != self.ignore_index
        k = self.num_classes
        codes = target[keep] * k + preds[keep]
        self.matrix += torch.bincount(codes, minlength=k * k).reshape(k, k)

    def compute(self) -> Tensor:
        return self.matrix


def scores(matrix: Tensor) -> dict[str, Tensor]:
    """pixel_acc, mean_acc, mIoU, fwIoU (scalars) and iou, acc (per class) from a matrix."""
    n = matrix.double()
    tp = n.diag()
    truth = n.sum(dim=1)  # pixels of each class in the ground truth
    predicted = n.sum(dim=0)
    union = truth + predicted - tp
    iou = tp / union  # NaN where a class is in neither truth nor prediction
    acc = tp / truth  # NaN where a class is absent from the truth
    total = truth.sum()
    return {
        "pixel_acc": tp.sum() / total,
        "mean_acc": acc.nanmean(),
        "mIoU": iou.nanmean(),
        "fwIoU": (truth[union > 0] * iou[union > 0]).sum() / total,
        "iou": iou,
        "acc": acc,
    }

"""Hand-computed metric and loss cases that tell the right formula from its likely slips.

The confusion matrix is asymmetric, so truth- and prediction-weighted fwIoU (and recall- and
precision-based mean accuracy) differ; the logits are non-uniform, so class weights change the
weighted mean; pixels labelled 255 must change neither a loss nor its gradient.
"""

import math

import pytest
import torch

from seg.metrics import ConfusionMatrix, scores
from seg.module import SegmentationModule

# Rows: truth, columns: prediction. Truth counts 4, 3, 3; prediction counts 5, 3, 2.
ASYMMETRIC = torch.tensor([[3, 1, 0], [2, 1, 0], [0, 1, 2]])


def pixels(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(preds, target) pixel rows realising a confusion matrix, plus two ignored pixels."""
    truth, pred = [], []
    for i, row in enumerate(matrix.tolist()):
        for j, count in enumerate(row):
            truth += [i] * count
            pred += [j] * count
    return torch.tensor([*pred, 0, 2]), torch.tensor([*truth, 255, 255])


def test_asymmetric_matrix_is_built_with_truth_in_rows():
    preds, target = pixels(ASYMMETRIC)
    metric = ConfusionMatrix(num_classes=3)
    metric.update(preds, target)
    assert torch.equal(metric.compute(), ASYMMETRIC)
    assert not torch.equal(ASYMMETRIC, ASYMMETRIC.T)


def test_asymmetric_scores_by_hand():
    s = scores(ASYMMETRIC)
    iou = [3 / (4 + 5 - 3), 1 / (3 + 3 - 1), 2 / (3 + 2 - 2)]  # 1/2, 1/5, 2/3
    assert s["iou"].tolist() == pytest.approx(iou)
    assert float(s["mIoU"]) == pytest.approx(sum(iou) / 3)
    assert float(s["pixel_acc"]) == pytest.approx(6 / 10)
    # recall per class (of the truth): 3/4, 1/3, 2/3; precision would give 3/5, 1/3, 1
    assert float(s["mean_acc"]) == pytest.approx((3 / 4 + 1 / 3 + 2 / 3) / 3)
    assert float(s["mean_acc"]) != pytest.approx((3 / 5 + 1 / 3 + 1) / 3)
    # weighted by truth counts 4, 3, 3 (0.46); by prediction counts 5, 3, 2 it would be 0.443
    assert float(s["fwIoU"]) == pytest.approx((4 * iou[0] + 3 * iou[1] + 3 * iou[2]) / 10)
    assert float(s["fwIoU"]) != pytest.approx((5 * iou[0] + 3 * iou[1] + 2 * iou[2]) / 10)


# Three pixels: class 0 scored [2, 0], class 1 scored [2, 0], one ignored pixel.
LOGITS = torch.tensor([[2.0, 2.0, -5.0], [0.0, 0.0, 7.0]]).reshape(1, 2, 1, 3)
MASKS = torch.tensor([[[0, 1, 255]]])
EASY = math.log1p(math.exp(-2))  # -log softmax([2, 0])[0]
HARD = 2 + EASY  # -log softmax([2, 0])[1]


@pytest.mark.parametrize(
    ("reduction", "weights", "expected"),
    [
        ("mean", None, (EASY + HARD) / 2),
        ("mean", [1.0, 3.0], (1 * EASY + 3 * HARD) / (1 + 3)),
        ("sum", None, EASY + HARD),
        ("sum", [1.0, 3.0], 1 * EASY + 3 * HARD),
    ],
)
def test_cross_entropy_with_class_weights_by_hand(reduction, weights, expected):
    module = SegmentationModule(
        "fcn8s", "tiny", num_classes=2, class_weights=weights, loss_reduction=reduction
    )
    assert float(module.loss(LOGITS, MASKS)) == pytest.approx(expected, rel=1e-6)


# Every loss the module can be configured with; a new loss option is one more entry.
LOSS_OPTIONS = {
    "ce-mean": {},
    "ce-sum": {"loss_reduction": "sum"},
    "ce-weighted": {"class_weights": [0.5, 1.0, 2.0, 4.0]},
    "ce-weighted-sum": {"class_weights": [0.5, 1.0, 2.0, 4.0], "loss_reduction": "sum"},
}


@pytest.mark.parametrize("options", LOSS_OPTIONS.values(), ids=LOSS_OPTIONS.keys())
def test_ignored_pixels_change_neither_the_loss_nor_its_gradient(options):
    module = SegmentationModule("fcn8s", "tiny", num_classes=4, **options)
    gen = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (2, 9, 11), generator=gen)
    ignored = torch.rand(masks.shape, generator=gen) < 0.3
    masks[ignored] = 255
    first = torch.randn(2, 4, 9, 11, generator=gen)
    # other values (large ones too) wherever the label is 255
    second = torch.where(ignored[:, None], 50 * torch.randn(first.shape, generator=gen), first)
    results = []
    for logits in (first, second):
        logits = logits.clone().requires_grad_(True)
        loss = module.loss(logits, masks)
        loss.backward()
        results.append((loss.detach(), logits.grad))
    (loss_a, grad_a), (loss_b, grad_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_b, grad_a, rtol=0, atol=1e-7)
    assert grad_a[ignored[:, None].expand_as(grad_a)].abs().max() == 0
    assert grad_a.abs().max() > 0  # the labelled pixels do get a gradient

"""Confusion matrix and scores against hand-computed answers."""

import math

import pytest
import torch

from seg.metrics import ConfusionMatrix, scores

# Rows: truth, columns: prediction. Pixel pairs (truth, pred): (0,0) (0,1) (1,1) (1,2) (2,2),
# plus one ignored pixel (255 -> predicted 0) that must not count.
TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PREDS = torch.tensor([[0, 1, 1], [2, 2, 0]])
EXPECTED = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_hand_computed_matrix_ignores_255():
    metric = ConfusionMatrix(num_classes=3)
    metric.update(PREDS, TARGET)
    assert torch.equal(metric.compute(), EXPECTED)


def test_hand_computed_scores():
    s = scores(EXPECTED)
    # IoU: class 0: 1/(2+1-1)=1/2, class 1: 1/(2+2-1)=1/3, class 2: 1/(1+2-1)=1/2
    assert s["iou"].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert float(s["mIoU"]) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert float(s["pixel_acc"]) == pytest.approx(3 / 5)
    assert float(s["mean_acc"]) == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert float(s["fwIoU"]) == pytest.approx((2 * 1 / 2 + 2 * 1 / 3 + 1 * 1 / 2) / 5)


def test_class_absent_everywhere_is_left_out_of_the_means():
    matrix = torch.zeros(4, 4, dtype=torch.long)
    matrix[:3, :3] = EXPECTED
    s = scores(matrix)
    assert math.isnan(float(s["iou"][3]))
    assert float(s["mIoU"]) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert float(s["mean_acc"]) == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_class_predicted_but_absent_from_truth_counts_as_zero_iou():
    matrix = torch.tensor([[2, 1], [0, 0]])  # class 1 never in truth, predicted once
    s = scores(matrix)
    assert s["iou"].tolist() == pytest.approx([2 / 3, 0.0])
    assert float(s["mIoU"]) == pytest.approx(1 / 3)
    assert float(s["mean_acc"]) == pytest.approx(2 / 3)  # only class 0 has truth pixels


def test_logits_are_argmaxed():
    logits = torch.nn.functional.one_hot(PREDS.clamp(max=2), 3).permute(2, 0, 1)[None].float()
    metric = ConfusionMatrix(num_classes=3)
    metric.update(logits, TARGET[None])
    assert torch.equal(metric.compute(), EXPECTED)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_value_does_not_depend_on_batching(batch_size):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, 17, 13, generator=gen)
    masks = torch.randint(0, 5, (8, 17, 13), generator=gen)
    masks[:, :2] = 255
    whole = ConfusionMatrix(5)
    whole.update(logits, masks)
    split = ConfusionMatrix(5)
    for i in range(0, 8, batch_size):
        split.update(logits[i : i + batch_size], masks[i : i + batch_size])
    assert torch.equal(whole.compute(), split.compute())
    assert float(scores(whole.compute())["mIoU"]) == float(scores(split.compute())["mIoU"])

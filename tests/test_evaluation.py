"""The one evaluation step and per-image scores, by hand."""

import pytest
import torch

from seg.evaluation import evaluate_batch, image_matrices, image_scores
from seg.metrics import ConfusionMatrix
from seg.module import SegmentationModule


def test_per_image_matrices_sum_to_the_batch_matrix_and_score_by_hand():
    masks = torch.tensor([[[0, 0, 1, 255]], [[2, 2, 2, 2]]])  # (2, 1, 4)
    preds = torch.tensor([[[0, 1, 1, 2]], [[2, 2, 0, 0]]])
    per_image = image_matrices(preds, masks, 3, 255)
    whole = ConfusionMatrix(3, 255)
    whole.update(preds, masks)
    assert torch.equal(per_image.sum(0), whole.compute())
    first = image_scores(per_image[0], ["road", "car", "sky"])
    # classes present: road (1/2), car (1/2); the ignored pixel predicted as sky does not count
    assert first["pixel_acc"] == pytest.approx(2 / 3) and first["mIoU"] == pytest.approx(0.5)
    assert first["iou"] == {"road": 0.5, "car": 0.5, "sky": None}
    assert first["worst_class"] == "road"  # ties: the first in class order
    second = image_scores(per_image[1], ["road", "car", "sky"])
    # sky: 2 right of 4; road: predicted twice, never true -> IoU 0, the worst
    assert second["mIoU"] == pytest.approx((0 + 0.5) / 2) and second["worst_class"] == "road"
    empty = image_scores(torch.zeros(3, 3, dtype=torch.long), ["road", "car", "sky"])
    assert empty["pixel_acc"] is None and empty["mIoU"] is None and empty["worst_class"] is None


def test_validation_updates_the_matrix_through_the_shared_step():
    torch.manual_seed(0)
    module = SegmentationModule("fcn32s", "tiny", num_classes=4, weights=None).eval()
    with torch.no_grad():
        module.model.decoder.score["32"].weight.normal_(std=2.0)  # zero-initialised: constant
    images = torch.randn(2, 3, 40, 56)
    masks = torch.randint(0, 4, (2, 40, 56))
    masks[:, :3] = 255
    with torch.inference_mode():
        preds = module.validation_step({"image": images, "mask": masks}, 0)
        expected = ConfusionMatrix(4, 255)
        _, shared = evaluate_batch(module.model, images, masks, expected)
    assert torch.equal(preds, shared) and len(preds.unique()) > 1
    assert torch.equal(module.val_matrix.compute(), expected.compute())

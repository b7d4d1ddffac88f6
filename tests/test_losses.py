"""The loss menu: hand-computed values, ignored pixels, class weights, weighted sums."""

import math

import pytest
import torch
import torch.nn.functional as F

from seg.losses import LOSSES, LossOptions, build_loss
from seg.module import SegmentationModule

WEIGHTS = [1.0, 2.0, 0.5]
WEIGHTED = ["ce", "ohem", "dice", "focal", "tversky"]  # Lovász-softmax has no class weights


def case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (2, 3, 4, 5) and masks with ignored (255) pixels and every class present."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 5, generator=g) * 2
    masks = torch.randint(0, 3, (2, 4, 5), generator=g)
    masks[0, 0] = 255
    masks[1, :, 0] = 255
    return logits, masks


@pytest.mark.parametrize(
    ("name", "weights"), [(n, None) for n in sorted(LOSSES)] + [(n, WEIGHTS) for n in WEIGHTED]
)
def test_ignored_pixels_change_neither_loss_nor_gradient(name, weights):
    loss = build_loss(name, LossOptions(class_weights=weights, ohem_min_kept=5))
    logits, masks = case()
    ignored = (masks == 255)[:, None].expand_as(logits)
    results = []
    for seed, scale in ((1, 1.0), (2, 50.0)):
        other = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed)) * scale
        x = torch.where(ignored, other, logits).requires_grad_()
        value = loss(x, masks)
        value.backward()
        results.append((value.detach(), x.grad))
    (v1, g1), (v2, g2) = results
    assert v1 > 0
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    assert g1[ignored].abs().max() == 0 and g1[~ignored].abs().max() > 0


def valid_pixels(logits, masks):
    keep = masks != 255
    return logits.permute(0, 2, 3, 1)[keep].double(), masks[keep]  # (P, K), (P,)


def test_ce_with_weights_and_label_smoothing_by_hand():
    logits, masks = case()
    x, y = valid_pixels(logits, masks)
    logp = x.log_softmax(dim=1)
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    nll = -logp[torch.arange(len(y)), y]
    smooth = -logp.mul(w).sum(dim=1) / 3  # label smoothing's uniform part, class-weighted
    expected = ((0.9 * nll * w[y]) + 0.1 * smooth).sum() / w[y].sum()
    opts = LossOptions(class_weights=WEIGHTS, label_smoothing=0.1)
    assert float(build_loss("ce", opts)(logits, masks)) == pytest.approx(float(expected), rel=1e-5)
    summed = build_loss("ce", LossOptions(class_weights=WEIGHTS, reduction="sum"))(logits, masks)
    assert float(summed) == pytest.approx(float((nll * w[y]).sum()), rel=1e-5)


def test_ohem_keeps_pixels_below_the_threshold_and_at_least_min_kept():
    # Two classes, four pixels; true-class probabilities 0.2, 0.5, 0.8, 0.9.
    probs = torch.tensor([0.2, 0.5, 0.8, 0.9])
    logits = torch.stack([torch.zeros(4), torch.log(probs / (1 - probs))])[None, :, None]
    masks = torch.tensor([[[1, 1, 1, 1]]])
    nll = -torch.log(probs)
    below = build_loss("ohem", LossOptions(ohem_thresh=0.7, ohem_min_kept=1))(logits, masks)
    assert float(below) == pytest.approx(float(nll[:2].mean()), rel=1e-5)
    at_least = build_loss("ohem", LossOptions(ohem_thresh=0.7, ohem_min_kept=3))(logits, masks)
    assert float(at_least) == pytest.approx(float(nll[:3].mean()), rel=1e-5)
    weighted = LossOptions(class_weights=[1.0, 4.0], ohem_thresh=0.7, ohem_min_kept=1)
    assert float(build_loss("ohem", weighted)(logits, masks)) == pytest.approx(
        float(nll[:2].mean()), rel=1e-5
    )  # one class kept: its weight cancels


def per_class_tversky(logits, masks, alpha: float, beta: float) -> torch.Tensor:
    """1 - TP / (TP + alpha FP + beta FN) per class; alpha = beta = 0.5 is 1 - Dice."""
    x, y = valid_pixels(logits, masks)
    p, t = x.softmax(dim=1), F.one_hot(y, 3).double()
    tp, fp, fn = (p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0)
    return 1 - tp / (tp + alpha * fp + beta * fn)  # (K,), every class present


@pytest.mark.parametrize(("name", "alpha", "beta"), [("dice", 0.5, 0.5), ("tversky", 0.3, 0.7)])
def test_dice_and_tversky_by_hand_with_class_weights(name, alpha, beta):
    logits, masks = case()
    per_class = per_class_tversky(logits, masks, alpha, beta)
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    plain = build_loss(name)(logits, masks)
    weighted = build_loss(name, LossOptions(class_weights=WEIGHTS))(logits, masks)
    assert float(plain) == pytest.approx(float(per_class.mean()), rel=1e-5)
    assert float(weighted) == pytest.approx(float((per_class * w).sum() / w.sum()), rel=1e-5)


def test_focal_by_hand_with_class_weights():
    logits, masks = case()
    x, y = valid_pixels(logits, masks)
    t = F.one_hot(y, 3).double()
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")  # one-vs-rest per class
    per_class = ((1 - torch.exp(-bce)) ** 2 * bce).mean(dim=0)  # gamma = 2
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    value = build_loss("focal", LossOptions(class_weights=WEIGHTS))(logits, masks)
    assert float(value) == pytest.approx(float((per_class * w).sum() / w.sum()), rel=1e-5)


def test_lovasz_of_one_class_is_the_mean_error():
    # All valid pixels of class 1: the Jaccard extension's gradient is 1/n per pixel, so the
    # loss is the mean of 1 - p_1 (Berman et al., 2018, for a single present class).
    logits, masks = case()
    masks = torch.where(masks == 255, masks, torch.ones_like(masks))
    x, _ = valid_pixels(logits, masks)
    expected = (1 - x.softmax(dim=1)[:, 1]).mean()
    assert float(build_loss("lovasz")(logits, masks)) == pytest.approx(float(expected), rel=1e-5)


def test_a_sum_of_losses_is_the_weighted_sum_of_its_terms():
    logits, masks = case()
    opts = LossOptions(class_weights=WEIGHTS)
    spec = {"ce": 1.0, "lovasz": 0.5, "dice": 0.25, "focal": 2}
    expected = sum(w * build_loss(name, opts)(logits, masks) for name, w in spec.items())
    assert float(build_loss(spec, opts)(logits, masks)) == pytest.approx(float(expected), rel=1e-6)


def test_unknown_or_malformed_loss_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"'dice_ce'.*\['ce', 'dice', 'focal', 'lovasz'"):
        build_loss("dice_ce")
    with pytest.raises(ValueError, match="must be a number"):
        build_loss({"ce": "much"})
    with pytest.raises(ValueError, match="empty"):
        build_loss({})


def test_the_module_trains_with_a_loss_dict_and_keeps_it_plain():
    module = SegmentationModule("fcn8s", "tiny", num_classes=3, loss={"ce": 1.0, "lovasz": 0.5})
    assert module.hparams.loss == {"ce": 1.0, "lovasz": 0.5}
    logits, masks = case()
    expected = F.cross_entropy(logits, masks, ignore_index=255) + 0.5 * build_loss("lovasz")(
        logits, masks
    )
    assert float(module.loss(logits, masks)) == pytest.approx(float(expected), rel=1e-6)
    assert math.isfinite(float(module.loss(logits.bfloat16(), masks)))

"""Losses at their edges, by hand: OHEM among many ignored pixels, a class absent from the batch,
every pixel ignored, weighted sums, and the validation loss over batches of unequal pixel counts.

Four valid pixels and three classes, with class 1 absent; their probabilities are chosen, so
every value below is a few lines of arithmetic (written out in the comments).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from seg.losses import LossOptions, build_loss
from seg.module import SegmentationModule

# Valid pixels a, b (class 0) and c, d (class 2); columns are the classes' probabilities.
PROBS = torch.tensor(
    [[0.7, 0.2, 0.1], [0.4, 0.25, 0.35], [0.1, 0.3, 0.6], [0.2, 0.1, 0.7]], dtype=torch.float64
)
LABELS = torch.tensor([0, 0, 2, 2])
WEIGHTS = [1.0, 2.0, 0.5]


def batch(ignored: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 3, 1, 4 + ignored) whose softmax at the valid pixels is PROBS; masks 255 between.

    Ignored pixels get random logits and sit before, between and after the valid ones.
    """
    g = torch.Generator().manual_seed(seed)
    width = 4 + ignored
    logits = torch.randn(1, 3, 1, width, generator=g, dtype=torch.float64) * 3
    masks = torch.full((1, 1, width), 255)
    places = torch.linspace(1, width - 2, 4).round().long() if ignored >= 2 else torch.arange(4)
    logits[0, :, 0, places] = PROBS.log().T
    masks[0, 0, places] = LABELS
    return logits.float(), masks


def test_ohem_cuts_the_hardest_valid_pixels_however_many_are_ignored():
    # One class-1 problem: true-class probabilities 0.2, 0.5, 0.8, 0.9 among 6 ignored pixels,
    # only two of them below the threshold 0.7.
    logits, masks = batch()
    probs = torch.tensor([0.2, 0.5, 0.8, 0.9])
    valid = masks[0, 0] != 255
    binary = torch.zeros(1, 2, 1, logits.shape[-1])
    binary[0, 1, 0, valid] = torch.log(probs / (1 - probs))  # sigmoid(logit) = p for class 1
    binary[0, :, 0, ~valid] = logits[0, :2, 0, ~valid]
    masks = torch.where(valid, torch.ones_like(masks), masks)
    nll = -probs.log()

    def ohem(min_kept: int, x: torch.Tensor = binary) -> torch.Tensor:
        return build_loss("ohem", LossOptions(ohem_thresh=0.7, ohem_min_kept=min_kept))(x, masks)

    x = binary.clone().requires_grad_()
    three = ohem(3, x)  # two below the threshold, one more to reach 3: 0.2, 0.5, 0.8
    assert float(three.detach()) == pytest.approx(float(nll[:3].mean()), rel=1e-5)
    three.backward()
    per_pixel = x.grad.abs().sum(dim=1)[0, 0]  # (W,)
    assert per_pixel[~valid].max() == 0
    assert (per_pixel[valid] > 0).tolist() == [True, True, True, False]
    assert float(ohem(100)) == pytest.approx(float(nll.mean()), rel=1e-5)  # all 4 valid pixels
    assert float(ohem(1)) == pytest.approx(float(nll[:2].mean()), rel=1e-5)  # threshold alone


def test_ohem_weights_the_kept_pixels_of_two_classes():
    # True-class probabilities a 0.7, b 0.4 (class 0), c 0.6, d 0.7 (class 2), among 6 ignored
    # pixels. The threshold 0.5 keeps b alone; min_kept 2 adds the next hardest, c.
    logits, masks = batch()
    nll = -PROBS[torch.arange(4), LABELS].log()
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[LABELS]
    opts = LossOptions(ohem_thresh=0.5, ohem_min_kept=2, class_weights=WEIGHTS)
    kept = torch.tensor([False, True, True, False])  # b and c: the two hardest
    expected = (w * nll)[kept].sum() / w[kept].sum()  # (1 * 0.916 + 0.5 * 0.511) / 1.5
    assert float(build_loss("ohem", opts)(logits, masks)) == pytest.approx(float(expected), 1e-5)


def tversky_by_hand(alpha: float, beta: float, weights=None) -> float:
    """1 - TP / (TP + alpha FP + beta FN) per present class; an absent class adds 0 (smp's rule).

    Class 0: TP 1.1, FP 0.3, FN 0.9. Class 2: TP 1.3, FP 0.45, FN 0.7. Class 1: absent, 0.
    The mean is over all three classes (weighted: over all three weights).
    """
    per_class = [
        1 - 1.1 / (1.1 + alpha * 0.3 + beta * 0.9),
        0.0,
        1 - 1.3 / (1.3 + alpha * 0.45 + beta * 0.7),
    ]
    w = weights or [1.0, 1.0, 1.0]
    return sum(v * wc for v, wc in zip(per_class, w, strict=True)) / sum(w)


@pytest.mark.parametrize(("name", "alpha", "beta"), [("dice", 0.5, 0.5), ("tversky", 0.3, 0.7)])
def test_dice_and_tversky_with_a_class_absent_from_the_batch(name, alpha, beta):
    logits, masks = batch()
    plain = build_loss(name)(logits, masks)
    assert float(plain) == pytest.approx(tversky_by_hand(alpha, beta), rel=1e-5)
    weighted = build_loss(name, LossOptions(class_weights=WEIGHTS))(logits, masks)
    assert float(weighted) == pytest.approx(tversky_by_hand(alpha, beta, WEIGHTS), rel=1e-5)
    if name == "dice":  # (0.6 / 1.7 + 0.575 / 1.875) / 3
        assert float(plain) == pytest.approx((0.6 / 1.7 + 0.575 / 1.875) / 3, rel=1e-5)


def jaccard_loss(foreground: set[int], wrong: set[int]) -> float:
    """Berman et al.'s set function: 1 - |fg minus wrong| / |fg union wrong|."""
    union = foreground | wrong
    return 1 - len(foreground - wrong) / len(union) if union else 0.0


def lovasz_extension(errors: list[float], foreground: set[int]) -> float:
    """sum_i e_(i) * (J(first i) - J(first i - 1)), errors sorted in decreasing order."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total, previous = 0.0, 0.0
    for i in range(1, len(order) + 1):
        current = jaccard_loss(foreground, set(order[:i]))
        total += errors[order[i - 1]] * (current - previous)
        previous = current
    return total


def test_lovasz_with_a_class_absent_averages_the_present_classes_only():
    logits, masks = batch()
    per_class = []
    for c in (0, 2):  # class 1 is absent: left out of the mean, not counted as 0
        fg = {i for i in range(4) if LABELS[i] == c}
        errors = [abs(float(LABELS[i] == c) - float(PROBS[i, c])) for i in range(4)]
        per_class.append(lovasz_extension(errors, fg))
    # Class 0: errors b 0.6, a 0.3 (foreground), d 0.2, c 0.1: 0.6/2 + 0.3/2 = 0.45.
    # Class 2: errors c 0.4 (fg), b 0.35 (bg), d 0.3 (fg): 0.4/2 + 0.35/6 + 0.3/3.
    assert per_class == pytest.approx([0.45, 0.4 / 2 + 0.35 / 6 + 0.3 / 3])
    value = build_loss("lovasz")(logits, masks)
    assert float(value) == pytest.approx(sum(per_class) / 2, rel=1e-5)


# Without the loss's own guard, torch's mean cross-entropy and smp's focal loss over no pixels
# are NaN (the step would stop with advice to lower the lr) and smp's Lovász an empty tensor.


@pytest.mark.parametrize("name", ["dice", "tversky", "lovasz", "ohem", "ce", "focal"])
def test_a_batch_with_every_pixel_ignored_gives_zero_and_no_gradient(name):
    logits, masks = batch()
    masks = torch.full_like(masks, 255)
    x = logits.clone().requires_grad_()
    value = build_loss(name, LossOptions(ohem_min_kept=3))(x, masks)
    assert value.shape == () and float(value.detach()) == 0.0
    value.backward()
    assert x.grad is not None and x.grad.abs().max() == 0


def cross_entropy_by_hand() -> float:
    """Mean of -log(true-class probability) over a, b, c, d: -log 0.7, 0.4, 0.6, 0.7."""
    return -(math.log(0.7) + math.log(0.4) + math.log(0.6) + math.log(0.7)) / 4


def test_a_weighted_sum_applies_each_weight():
    logits, masks = batch()
    alone = build_loss({"ce": 0.25})(logits, masks)  # one term still carries its weight
    assert float(alone) == pytest.approx(0.25 * cross_entropy_by_hand(), rel=1e-5)
    both = build_loss({"ce": 2.0, "dice": 0.5})(logits, masks)
    expected = 2.0 * cross_entropy_by_hand() + 0.5 * tversky_by_hand(0.5, 0.5)
    assert float(both) == pytest.approx(expected, rel=1e-5)
    assert float(build_loss({"dice": 0.0, "ce": 1.0})(logits, masks)) == pytest.approx(
        cross_entropy_by_hand(), rel=1e-5
    )


def test_validation_loss_is_the_mean_over_every_valid_pixel_of_the_epoch():
    """Two batches, 64 and 4 valid pixels: the epoch's loss weights each pixel once."""
    torch.manual_seed(0)
    module = SegmentationModule("unet", "tiny", num_classes=3, weights=None).eval()  # random scores
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 8, 8, generator=g)
    masks = torch.randint(0, 3, (2, 8, 8), generator=g)
    masks[1] = 255
    masks[1, 0, :4] = torch.tensor([0, 1, 2, 1])
    total, pixels, means = 0.0, 0, []
    with torch.no_grad():
        for i in range(2):
            image, mask = images[i : i + 1], masks[i : i + 1]
            module.validation_step({"image": image, "mask": mask}, i)
            ce = F.cross_entropy(module(image), mask, ignore_index=255, reduction="sum")
            valid = int((mask != 255).sum())
            total, pixels = total + float(ce), pixels + valid
            means.append(float(ce) / valid)
    assert pixels == 68
    assert float(module.val_loss.compute()) == pytest.approx(total / pixels, rel=1e-5)
    assert abs(total / pixels - sum(means) / 2) > 1e-3  # the per-batch average differs

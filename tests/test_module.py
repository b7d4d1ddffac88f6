"""SegmentationModule's optimisation pieces: class weights, bias groups, the poly schedule."""

import math
from types import SimpleNamespace

import pytest
import torch

from seg.module import SegmentationModule, poly_factor
from train import class_weights


class Frequencies:
    num_classes = 4

    def class_frequencies(self):
        return [0.5, 0.25, 0.25, 0.0]  # the last class never occurs


def test_median_frequency_weights_by_hand():
    # median of the present frequencies (0.5, 0.25, 0.25) is 0.25; weight = median / frequency
    assert class_weights("median_frequency", Frequencies()) == pytest.approx([0.5, 1, 1, 0])
    sqrt = class_weights("median_frequency_sqrt", Frequencies())
    assert sqrt == pytest.approx([0.5**0.5, 1, 1, 0])
    assert class_weights([1, 2, 3, 4], Frequencies()) == [1.0, 2.0, 3.0, 4.0]
    assert class_weights(None, Frequencies()) is None
    with pytest.raises(ValueError, match="median_frequency"):
        class_weights("inverse", Frequencies())


def test_class_weights_enter_the_loss():
    module = SegmentationModule("fcn8s", "tiny", num_classes=2, class_weights=[1.0, 3.0])
    logits = torch.zeros(1, 2, 1, 2)  # uniform: every pixel costs log 2
    masks = torch.tensor([[[0, 1]]])
    # weighted mean: (1 * log2 + 3 * log2) / (1 + 3) = log 2; sum reduction: 4 log 2
    assert float(module.loss(logits, masks)) == pytest.approx(torch.log(torch.tensor(2.0)).item())
    module = SegmentationModule(
        "fcn8s", "tiny", num_classes=2, class_weights=[1.0, 3.0], loss_reduction="sum"
    )
    assert float(module.loss(logits, masks)) == pytest.approx(
        4 * torch.log(torch.tensor(2.0)).item()
    )


def test_paper_bias_treatment_and_frozen_upsampler():
    module = SegmentationModule(
        "fcn8s",
        "tiny",
        num_classes=3,
        lr=0.1,
        weight_decay=5e-4,
        bias_lr_factor=2.0,
        bias_weight_decay=False,
        freeze_upsampler=True,
        momentum=0.99,
    )
    module.trainer = SimpleNamespace(estimated_stepping_batches=100, max_steps=-1)
    opt = module.configure_optimizers()["optimizer"]
    weights, biases = opt.param_groups
    assert weights["lr"] == 0.1 and weights["weight_decay"] == 5e-4 and weights["momentum"] == 0.99
    assert biases["lr"] == 0.2 and biases["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in biases["params"])
    frozen = module.model.decoder.up_out.weight
    assert not any(p is frozen for g in opt.param_groups for p in g["params"])


def test_poly_schedule_with_warmup_by_hand():
    hp = SimpleNamespace(poly_power=0.9, warmup_iters=4)
    assert poly_factor(0, 100, hp) == pytest.approx(0.25)  # the warm-up ignores the length
    assert poly_factor(3, 100, hp) == poly_factor(3, 10**9, hp) == pytest.approx(1.0)
    assert poly_factor(4, 100, hp) == pytest.approx((1 - 4 / 100) ** 0.9)
    assert poly_factor(50, 100, hp) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100, hp) == 0.0
    fixed = SimpleNamespace(poly_power=0.0, warmup_iters=0)  # the paper's fixed learning rate
    assert poly_factor(70, 100, fixed) == 1.0


def test_unknown_choices_list_the_valid_ones():
    with pytest.raises(ValueError, match="sgd"):
        SegmentationModule("fcn8s", "tiny", optimizer="adam")
    with pytest.raises(ValueError, match="mean"):
        SegmentationModule("fcn8s", "tiny", loss_reduction="none")
    with pytest.raises(ValueError, match="one weight per class"):
        SegmentationModule("fcn8s", "tiny", num_classes=3, class_weights=[1.0])


def test_training_miou_counts_the_epochs_crops_and_starts_again(monkeypatch):
    module = SegmentationModule("fcn8s", "tiny", num_classes=2)
    masks = torch.tensor([[[0, 0, 1, 1]]])  # two pixels of each class, one row
    # the network says class 0 everywhere: IoU 2/4 for class 0, 0/2 for class 1 -> mIoU 0.25
    logits = torch.stack([torch.ones(1, 1, 4), torch.zeros(1, 1, 4)], dim=1).requires_grad_()
    monkeypatch.setattr(module, "forward", lambda images: logits)
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.update({name: value}))
    batch = {"image": torch.zeros(1, 3, 1, 4), "mask": masks}
    module.training_step(batch, 0)
    module.on_train_epoch_end()
    assert logged["train/mIoU"] == pytest.approx(0.25)
    # a perfect epoch after it is scored alone: the matrix was reset
    perfect = torch.nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()
    monkeypatch.setattr(module, "forward", lambda images: perfect)
    module.training_step(batch, 0)
    module.on_train_epoch_end()
    assert logged["train/mIoU"] == pytest.approx(1.0)


def test_deep_supervision_scores_the_coarser_fcn_predictions():
    torch.manual_seed(0)
    module = SegmentationModule(arch="fcn8s", backbone="tiny", num_classes=3, aux_weight=0.4)
    images, masks = torch.randn(2, 3, 50, 70), torch.randint(0, 3, (2, 50, 70))
    module.train()
    module(images)
    coarse = module.model.decoder.coarse  # FCN-32s and FCN-16s, on the input padded to 64x96
    assert {s: tuple(c.shape[-2:]) for s, c in coarse.items()} == {32: (2, 3), 16: (4, 6)}
    # score layers start at zero: each coarse prediction is uniform, cross-entropy ln 3
    assert module.deep_supervision(masks).item() == pytest.approx(0.4 * 2 * math.log(3))
    assert module.model.decoder.coarse == {}  # taken once; no graph kept across steps
    # and it trains the stride-32 score layer beyond what the final loss does
    plain = SegmentationModule(arch="fcn8s", backbone="tiny", num_classes=3)
    plain.load_state_dict(module.state_dict())
    grads = []
    for m in (plain, module):
        m.train()
        out = m(images)
        loss = m.loss(out, masks) + (m.deep_supervision(masks) if m is module else 0)
        loss.backward()
        grads.append(m.model.decoder.score["32"].bias.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    module.eval()
    module(images)
    assert module.model.decoder.coarse == {}  # nothing kept outside training


def test_deep_supervision_needs_fcn_skips():
    from seg.errors import ConfigError

    for arch in ("unet", "fcn32s"):
        with pytest.raises(ConfigError, match="model.aux_weight"):
            SegmentationModule(arch=arch, backbone="tiny", num_classes=3, aux_weight=0.4)
    with pytest.raises(ConfigError, match="model.aux_weight"):
        SegmentationModule(arch="fcn8s", backbone="tiny", num_classes=3, aux_weight=-1)

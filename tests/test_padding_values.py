"""SegmentationModel pads bottom-right and crops back: checked by values, for every arch.

In eval mode the logits on an image must equal the top-left crop of the logits on that image
zero-padded bottom-right to the next multiple of 32 (what the wrapper does inside). Odd sizes
make the padding non-trivial; padding on the top or left, another fill value or a crop taken
from the wrong corner all change the values while every shape stays right.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seg.models import DECODERS, MULTIPLE, SegmentationModel, build_model
from seg.models.backbones import UNetEncoder

SIZES = [(37, 61), (33, 95), (64, 45)]  # odd both ways, one side 64 already a multiple of 32


def small_unet(num_classes: int) -> SegmentationModel:
    """The original U-Net at an eighth of its width: the same strides 1-16, cheap to run."""
    encoder = UNetEncoder(widths=(8, 16, 32, 64, 128))
    return SegmentationModel(encoder, DECODERS["unet"](encoder.channels, num_classes))


NETWORKS = {
    **{f"{arch}/tiny": (lambda k, a=arch: build_model(a, "tiny", k)) for arch in DECODERS},
    "unet/unet-small": small_unet,
}


def randomised(model: nn.Module) -> nn.Module:
    """Eval mode, with zero-initialised tensors (FCN score layers) made random: varied logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.5)
    return model.eval()


def pad_bottom_right(images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    return F.pad(images, (0, (-w) % MULTIPLE, 0, (-h) % MULTIPLE))


def pad_top_left(images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    return F.pad(images, ((-w) % MULTIPLE, 0, (-h) % MULTIPLE, 0))


@pytest.mark.parametrize("name", NETWORKS)
def test_logits_equal_the_crop_of_the_logits_on_the_padded_input(name):
    model = randomised(NETWORKS[name](3))
    gen = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        images = torch.randn(1, 3, h, w, generator=gen)
        with torch.no_grad():
            logits = model(images)
            padded = model(pad_bottom_right(images))[..., :h, :w]
            # what a wrapper padding top/left would return: other values, same shape
            wrong = model(pad_top_left(images))[..., -h:, -w:]
        assert logits.shape == (1, 3, h, w)
        torch.testing.assert_close(logits, padded, rtol=0, atol=1e-5)
        assert logits.std() > 1e-3, "constant logits: the comparison would prove nothing"
        assert (wrong - logits).abs().max() > 1e-3, "top/left padding must be told apart"

"""FCN-32s, FCN-16s and FCN-8s: one decoder with different skip strides.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, https://arxiv.org/abs/1411.4038; Shelhamer, Long and Darrell, TPAMI 2017,
https://arxiv.org/abs/1605.06211.

Faithful details: score layers are 1x1 convolutions initialised to zero, so a fresh model's logits
are exactly 0 and a new skip added in staged training (32s -> 16s -> 8s) contributes nothing at
first; upsampling is a ConvTranspose2d initialised to bilinear interpolation, and the final one
can be frozen as in the paper. Not reproduced: the paper's padding=100 on conv1_1 and its crop
offsets; SegmentationModel pads the input to a multiple of 32 instead, so every map lines up.
"""

from itertools import pairwise

from torch import Tensor, nn

from .layers import bilinear_upsample


class FCNDecoder(nn.Module):
    """Score stride-32 features, then add finer skip scores coarse to fine.

    skip_strides=() is FCN-32s, (16,) is FCN-16s, (16, 8) is FCN-8s.
    """

    def __init__(
        self,
        in_channels: dict[int, int],
        num_classes: int,
        skip_strides: tuple[int, ...] = (),
        freeze_upsampler: bool = False,
    ):
        super().__init__()
        strides = (32, *skip_strides)
        lacking = [s for s in strides if s not in in_channels]
        if lacking:
            raise ValueError(
                f"FCN with skip strides {skip_strides} needs backbone features at strides"
                f" {list(strides)}, but this backbone has only {sorted(in_channels)} (missing"
                f" {lacking}); pick a backbone with strides 8/16/32 (vgg16, resnets,"
                " mobilenet_v3_large, tiny) or model=unet"
            )
        if list(strides) != sorted(strides, reverse=True):
            raise ValueError(f"skip_strides must run coarse to fine, got {skip_strides}")
        self.skip_strides = skip_strides
        self.score = nn.ModuleDict(
            {str(s): nn.Conv2d(in_channels[s], num_classes, 1) for s in strides}
        )
        for score in self.score.values():
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        # x2 between consecutive strides, learned; then the final upsampler from the finest stride
        self.up2 = nn.ModuleList(
            bilinear_upsample(num_classes, coarse // fine) for coarse, fine in pairwise(strides)
        )
        self.up_out = bilinear_upsample(num_classes, strides[-1], trainable=not freeze_upsampler)
        # Deep supervision (model.aux_weight): in training, forward also keeps the coarser
        # predictions, FCN-32s's and FCN-16s's scores, as {stride: (N, K, H/stride, W/stride)}.
        self.keep_coarse = False
        self.coarse: dict[int, Tensor] = {}

    def forward(self, features: dict[int, Tensor]) -> Tensor:
        x = self.score["32"](features[32])  # (N, K, H/32, W/32)
        coarse = {}
        steps = pairwise((32, *self.skip_strides))
        for (previous, stride), up in zip(steps, self.up2, strict=True):
            coarse[previous] = x  # the FCN-<previous>s prediction
            skip = self.score[str(stride)](features[stride])  # (N, K, H/stride, W/stride)
            x = up(x) + skip  # sizes match exactly: the input is padded to a multiple of 32
        self.coarse = coarse if self.keep_coarse and self.training else {}
        return self.up_out(x)  # (N, K, H, W)


def fcn32s(
    in_channels: dict[int, int], num_classes: int, freeze_upsampler: bool = False
) -> FCNDecoder:
    """FCN-32s: stride-32 scores upsampled 32x."""
    return FCNDecoder(in_channels, num_classes, (), freeze_upsampler)


def fcn16s(
    in_channels: dict[int, int], num_classes: int, freeze_upsampler: bool = False
) -> FCNDecoder:
    """FCN-16s: adds the stride-16 (pool4) skip."""
    return FCNDecoder(in_channels, num_classes, (16,), freeze_upsampler)


def fcn8s(
    in_channels: dict[int, int], num_classes: int, freeze_upsampler: bool = False
) -> FCNDecoder:
    """FCN-8s: adds the stride-16 (pool4) and stride-8 (pool3) skips."""
    return FCNDecoder(in_channels, num_classes, (16, 8), freeze_upsampler)

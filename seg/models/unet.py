"""U-Net decoder over any backbone's features.

Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597.

Per stage, coarse to fine: a 2x2 up-convolution (ConvTranspose2d, stride 2), concatenation with
the skip, two 3x3 conv + BN + ReLU. Each stage is as wide as its skip, at most 512 channels. Over
the `unet` backbone (widths 64-1024, strides 1-16) this is the paper's network, with padded
convolutions (so no crops) and batch norm; the cap only narrows the ResNet-50/101 decoders, whose
1024-channel stride-16 stage would otherwise hold 28 M parameters. Over backbones whose finest
feature is coarser than stride 1 (ResNets: stride 4), the logits are bilinearly resized to the
input.
"""

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import double_conv


class UNetDecoder(nn.Module):
    """Upsample, concatenate the skip, two convs; each stage as wide as its skip, <= max_width."""

    def __init__(self, in_channels: dict[int, int], num_classes: int, max_width: int = 512):
        super().__init__()
        self.strides = sorted(in_channels, reverse=True)  # coarse to fine
        c = in_channels[self.strides[0]]
        self.up, self.conv = nn.ModuleList(), nn.ModuleList()
        for coarse, fine in pairwise(self.strides):
            skip, factor = in_channels[fine], coarse // fine
            width = min(skip, max_width)
            self.up.append(nn.ConvTranspose2d(c, width, factor, stride=factor))
            self.conv.append(double_conv(skip + width, width))
            c = width
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, features: dict[int, Tensor]) -> Tensor:
        x = features[self.strides[0]]  # (N, C, H/s, W/s) at the coarsest stride s
        for stride, up, conv in zip(self.strides[1:], self.up, self.conv, strict=True):
            x = conv(torch.cat([features[stride], up(x)], dim=1))  # (N, width, H/stride, W/stride)
        x = self.classifier(x)  # (N, K, H/s, W/s) at the finest stride s
        if self.strides[-1] > 1:
            x = F.interpolate(
                x, scale_factor=self.strides[-1], mode="bilinear", align_corners=False
            )
        return x  # (N, K, H, W)


def unet(
    in_channels: dict[int, int], num_classes: int, freeze_upsampler: bool = False
) -> UNetDecoder:
    """U-Net decoder. freeze_upsampler has nothing to do: its final resize is fixed bilinear."""
    return UNetDecoder(in_channels, num_classes)

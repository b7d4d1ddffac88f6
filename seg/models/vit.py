"""Plain ViTs as backbones: one token map made into strides 4-32 by a simple feature pyramid.

Li, Mao, Girshick and He, "Exploring Plain Vision Transformer Backbones for Object Detection"
(ViTDet), ECCV 2022, https://arxiv.org/abs/2203.16527, Section 3 and Figure 2(c): from the last
stride-16 map alone, stride 4 is two 2x2 deconvolutions, stride 8 one, stride 16 the map itself
and stride 32 a 2x2 max-pool. ViTDet then projects every level to 256 channels with a 1x1 and a
3x3 convolution; here each level ends in batch norm only, because the decoders bring their own
convolutions. Channels: C/4, C/2, C, C for embedding width C.

Any input size: timm pads the image to a multiple of the patch (``dynamic_img_pad``) and
resamples the position embedding to the token grid (``dynamic_img_size``). A patch other than
16 (DINOv2's 14) is resampled to stride 16 by its exact scale p/16, so token i stays centred on
the pixels it saw, and cropped to H/16 x W/16.
"""

import torch.nn.functional as F
from torch import Tensor, nn

STRIDE = 16  # the pyramid's base stride, as in ViTDet


class SimpleFeaturePyramid(nn.Module):
    """(N, C, H/16, W/16) -> {4: (N, C/4, H/4, W/4), 8: C/2, 16: C, 32: C at H/32, W/32}."""

    def __init__(self, width: int):
        super().__init__()
        c = width
        self.levels = nn.ModuleDict(
            {
                "4": nn.Sequential(
                    nn.ConvTranspose2d(c, c // 2, 2, stride=2),
                    nn.BatchNorm2d(c // 2),
                    nn.GELU(),
                    nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
                    nn.BatchNorm2d(c // 4),
                ),
                "8": nn.Sequential(
                    nn.ConvTranspose2d(c, c // 2, 2, stride=2), nn.BatchNorm2d(c // 2)
                ),
                "16": nn.BatchNorm2d(c),
                "32": nn.Sequential(nn.MaxPool2d(2), nn.BatchNorm2d(c)),
            }
        )
        self.channels = {4: c // 4, 8: c // 2, 16: c, 32: c}

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        return {int(s): level(x) for s, level in self.levels.items()}  # (N, C_s, H/s, W/s)


class ViTBackbone(nn.Module):
    """A timm ViT with ``features_only=True, out_indices=(-1,)`` and a simple feature pyramid."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.patch = vit.feature_info.reduction()[-1]
        self.pyramid = SimpleFeaturePyramid(vit.feature_info.channels()[-1])
        self.channels = self.pyramid.channels

    def forward(self, images: Tensor) -> dict[int, Tensor]:
        h, w = images.shape[-2] // STRIDE, images.shape[-1] // STRIDE
        tokens = self.vit(images)[-1]  # (N, C, ceil(H/p), ceil(W/p))
        if self.patch != STRIDE:  # the exact scale keeps token centres in place
            tokens = F.interpolate(
                tokens, scale_factor=self.patch / STRIDE, mode="bilinear", align_corners=False
            )  # (N, C, >= H/16, >= W/16): the padded tokens cover at least the image
        return self.pyramid(tokens[..., :h, :w])  # from (N, C, H/16, W/16)

"""Backbones: an image batch in, a dict of features keyed by output stride out.

Contract: `forward(images (N, C, H, W)) -> dict[int, Tensor]` (C = in_channels, 3 for RGB),
feature s of shape (N, channels[s], H/s, W/s) for H, W multiples of 32, and a
`channels: dict[int, int]` attribute.
Strides: vgg16 2-32 (pool1-pool4, then fc7), resnets 4-32, mobilenet_v3_large 2-32,
unet 1-16 (the original U-Net encoder), tiny 2-32; ``timm:<name>`` any timm model (timm.py).

Every builder takes `weights` (None, "imagenet" or a local state dict path, see weights.py),
`weights_required` and `in_channels`; torchvision backbones adapt their pretrained first
convolution to `in_channels` (see weights.adapt_first_conv).
"""

import torchvision
from torch import Tensor, nn

from .layers import conv_bn_relu, double_conv, linear_to_conv
from .weights import adapt_first_conv, load_weights


class Backbone(nn.Module):
    """Run `stages` in order; the output of stage s is the feature at stride s."""

    def __init__(self, stages: dict[int, nn.Module], channels: dict[int, int]):
        super().__init__()
        self.stages = nn.ModuleDict({str(s): stage for s, stage in stages.items()})
        self.channels = channels

    def forward(self, images: Tensor) -> dict[int, Tensor]:
        features, x = {}, images
        for stride, stage in self.stages.items():
            x = stage(x)
            features[int(stride)] = x  # (N, channels[stride], H/stride, W/stride)
        return features


class VGG16Backbone(Backbone):
    """VGG16 as in Long et al.: conv1-conv5, then fc6/fc7 as convolutions (FCN's stride-32 map).

    fc6 is a 7x7 convolution with 4096 channels, padded by 3 so maps smaller than 7x7 (inputs
    under 224 pixels) still work; fc7 is a 1x1 convolution. Both take the weights of torchvision's
    Linear classifier layers, each followed by ReLU and dropout (p=0.5) as in the paper.
    """

    def __init__(self, vgg: torchvision.models.VGG):
        f, fc6, fc7 = vgg.features, vgg.classifier[0], vgg.classifier[3]
        fc = nn.Sequential(
            linear_to_conv(fc6, 512, 7, padding=3),  # (N, 4096, H/32, W/32)
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            linear_to_conv(fc7, 4096, 1),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )
        # torchvision's layout: max-pools at indices 4, 9, 16, 23, 30
        stages = {2: f[:5], 4: f[5:10], 8: f[10:17], 16: f[17:24], 32: nn.Sequential(f[24:], fc)}
        super().__init__(stages, {2: 64, 4: 128, 8: 256, 16: 512, 32: 4096})


class ResNetBackbone(Backbone):
    """torchvision ResNet without avgpool/fc: layer1-layer4 at strides 4, 8, 16, 32."""

    def __init__(self, resnet: torchvision.models.ResNet):
        r = resnet
        stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        c = r.fc.in_features  # each layer halves the width of the next: c/8, c/4, c/2, c
        stages = {4: stem, 8: r.layer2, 16: r.layer3, 32: r.layer4}
        super().__init__(stages, {4: c // 8, 8: c // 4, 16: c // 2, 32: c})


class MobileNetV3Backbone(Backbone):
    """torchvision MobileNetV3 features, tapped at the end of each stride (2, 4, 8, 16, 32)."""

    def __init__(self, mobilenet: torchvision.models.MobileNetV3):
        f = mobilenet.features
        ends = {2: 2, 4: 4, 8: 7, 16: 13, 32: len(f)}  # the block before each stride-2 block
        stages, start = {}, 0
        for stride, end in ends.items():
            stages[stride], start = f[start:end], end
        channels = {s: stage[-1].out_channels for s, stage in stages.items()}
        super().__init__(stages, channels)


class UNetEncoder(Backbone):
    """The original U-Net contracting path (Ronneberger et al., MICCAI 2015), padded, with BN.

    Double 3x3 conv blocks of 64-128-256-512-1024 channels, a 2x2 max-pool before each but the
    first: strides 1, 2, 4, 8, 16.
    """

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 1024), in_channels: int = 3):
        stages, channels, c = {}, {}, in_channels
        for i, width in enumerate(widths):
            block = double_conv(c, width)
            stages[2**i] = nn.Sequential(nn.MaxPool2d(2), block) if i else block
            channels[2**i], c = width, width
        super().__init__(stages, channels)


class TinyBackbone(Backbone):
    """Five strided 3x3 conv + BN + ReLU layers (strides 2-32): for fast tests."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 32, 48, 64), in_channels: int = 3):
        stages, channels, c = {}, {}, in_channels
        for i, width in enumerate(widths):
            stages[2 ** (i + 1)] = conv_bn_relu(c, width, stride=2)
            channels[2 ** (i + 1)], c = width, width
        super().__init__(stages, channels)


def torchvision_model(
    name: str, weights: str | None, weights_required: bool, in_channels: int = 3
) -> nn.Module:
    """torchvision model `name` with random init, `weights` loaded, first conv adapted."""
    model = torchvision.models.get_model(name, weights=None)
    load_weights(model, name, weights, weights_required)
    adapt_first_conv(model, in_channels)
    return model


def vgg16(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> VGG16Backbone:
    return VGG16Backbone(torchvision_model("vgg16", weights, weights_required, in_channels))


def resnet18(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> ResNetBackbone:
    return ResNetBackbone(torchvision_model("resnet18", weights, weights_required, in_channels))


def resnet34(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> ResNetBackbone:
    return ResNetBackbone(torchvision_model("resnet34", weights, weights_required, in_channels))


def resnet50(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> ResNetBackbone:
    return ResNetBackbone(torchvision_model("resnet50", weights, weights_required, in_channels))


def resnet101(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> ResNetBackbone:
    return ResNetBackbone(torchvision_model("resnet101", weights, weights_required, in_channels))


def mobilenet_v3_large(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> MobileNetV3Backbone:
    model = torchvision_model("mobilenet_v3_large", weights, weights_required, in_channels)
    return MobileNetV3Backbone(model)


def unet(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> UNetEncoder:
    """The U-Net encoder; `weights` may be a state dict saved from one (no ImageNet weights)."""
    encoder = UNetEncoder(in_channels=in_channels)
    load_weights(encoder, "unet", weights, weights_required)
    return encoder


def tiny(
    weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> TinyBackbone:
    """The tiny test backbone; `weights` may be a state dict saved from one."""
    backbone = TinyBackbone(in_channels=in_channels)
    load_weights(backbone, "tiny", weights, weights_required)
    return backbone


class Backbones(dict):
    """Builders by name; ``timm:<name>`` answers too, for every model timm knows (timm.py).

    Iterating lists the named builders only. timm is imported at the first ``timm:`` lookup:
    it takes about a second, which runs that never name one do not pay.
    """

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or timm_builder(name) is not None

    def __missing__(self, name: str):
        builder = timm_builder(name)
        if builder is None:
            raise KeyError(name)
        return builder


def timm_builder(name: object):
    """The builder of ``timm:<name>``, or None for other names and models timm does not know."""
    if not (isinstance(name, str) and name.startswith("timm:")):
        return None
    from . import timm as timm_backbones

    return timm_backbones.builder(name)


BACKBONES = Backbones(
    {
        "vgg16": vgg16,
        "resnet18": resnet18,
        "resnet34": resnet34,
        "resnet50": resnet50,
        "resnet101": resnet101,
        "mobilenet_v3_large": mobilenet_v3_large,
        "unet": unet,
        "tiny": tiny,
    }
)

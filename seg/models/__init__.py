"""Segmentation networks: backbone -> features by stride -> decoder -> logits at input size.

build_model(arch, backbone, num_classes, weights=...) picks a decoder from DECODERS
(fcn32s fcn16s fcn8s unet) and a backbone from BACKBONES (vgg16 resnet18 resnet34 resnet50
resnet101 mobilenet_v3_large unet tiny, and timm:<name> for any timm model).

Contracts: a backbone maps images (N, C, H, W) (C = in_channels, 3 for RGB) to
dict[stride, Tensor] and has a `channels` attribute (see backbones.py); a decoder is built as
`decoder(in_channels: dict[int, int], num_classes, freeze_upsampler=False)` and maps that dict
to logits (N, num_classes, H, W) for H, W multiples of 32; SegmentationModel pads and crops so
any H, W works.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import BACKBONES
from .fcn import fcn8s, fcn16s, fcn32s
from .unet import unet

DECODERS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "unet": unet,
}

MULTIPLE = 32  # the coarsest stride: inputs are padded to a multiple of it


class SegmentationModel(nn.Module):
    """Images (N, C, H, W) -> logits (N, num_classes, H, W) for any H, W.

    The input is zero-padded (the ImageNet mean after normalisation) at the bottom and right to a
    multiple of 32, so every stride divides it exactly, and the logits are cropped back.
    """

    def __init__(self, backbone: nn.Module, decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        x = F.pad(
            images, (0, (-w) % MULTIPLE, 0, (-h) % MULTIPLE)
        )  # (N, 3, H', W'), H', W' % 32 == 0
        logits = self.decoder(self.backbone(x))  # (N, K, H', W')
        return logits[..., :h, :w]


def build_model(
    arch: str,
    backbone: str,
    num_classes: int,
    weights: str | None = None,
    weights_required: bool = True,
    freeze_upsampler: bool = False,
    in_channels: int = 3,
    bn_momentum: float | None = None,
) -> SegmentationModel:
    """Decoder `arch` over `backbone` with `num_classes` outputs.

    weights: None (random init), "imagenet" or a path to a local torchvision-format state dict of
    the backbone. weights_required=False turns "weights unavailable" into one warning line.
    freeze_upsampler fixes the FCN's final bilinear upsampler, as in the paper. in_channels is
    the number of image bands; ImageNet weights then have their first convolution adapted.
    bn_momentum, when given, is set on every batch norm layer (None keeps each backbone's own:
    torchvision's MobileNetV3 uses 0.01, ResNets 0.1).
    """
    if arch not in DECODERS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(DECODERS)}")
    if backbone not in BACKBONES:
        raise ValueError(
            f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}, or"
            " timm:<name> for a model timm knows (timm:convnext_tiny)"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    encoder = BACKBONES[backbone](
        weights=weights, weights_required=weights_required, in_channels=in_channels
    )
    decoder = DECODERS[arch](encoder.channels, num_classes, freeze_upsampler=freeze_upsampler)
    model = SegmentationModel(encoder, decoder)
    if bn_momentum is not None:
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.momentum = bn_momentum
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def load_matching_state(
    model: nn.Module, state_dict: dict[str, Tensor]
) -> tuple[list[str], list[str]]:
    """Copy every tensor of `state_dict` whose key and shape match into `model`, in place.

    Returns (loaded, skipped): skipped are the model's keys left as initialised, missing from
    `state_dict` or of another shape. This is the paper's staged init (FCN-16s from FCN-32s: the
    new skip score layer stays zero) and fine-tuning across datasets (another class count).
    """
    loaded, skipped = [], []
    for key, tensor in model.state_dict().items():  # these tensors share storage with the model
        source = state_dict.get(key)
        if source is not None and source.shape == tensor.shape:
            tensor.copy_(source)
            loaded.append(key)
        else:
            skipped.append(key)
    return loaded, skipped


__all__ = [
    "BACKBONES",
    "DECODERS",
    "SegmentationModel",
    "build_model",
    "count_parameters",
    "load_matching_state",
]

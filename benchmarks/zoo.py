"""Networks by name: ours and the peers we compare against, each returning logits as a tensor.

Names: ``fcn8s/resnet18`` (ours: arch/backbone), ``torchfcn:FCN8s`` (the pytorch-fcn package),
``smp:Unet/resnet34`` (segmentation_models_pytorch) and ``torchvision:fcn_resnet50``. Peers are
not dependencies of the project: install them with ``pip install -r benchmarks/requirements.txt``
(see benchmarks/README.md); a missing one raises PeerMissing, which the scripts report and skip.
"""

import importlib
import sys
import types

import torch.nn.functional as F
from torch import Tensor, nn

from seg.models import build_model
from seg.models.layers import UpConv

PEERS = {
    "torchfcn": "pip install --no-deps torchfcn==1.9.7 && pip install pytz scikit-image tqdm scipy",
    "segmentation_models_pytorch": "pip install segmentation-models-pytorch",
}


class PeerMissing(ImportError):
    """A peer package is not installed; the message says how to install it."""


def import_peer(module: str):
    """Import a peer package or raise PeerMissing with its install command."""
    if module == "torchfcn":
        # torchfcn imports the chainer-era `fcn` package (which no longer builds) only for its
        # download helpers; a stand-in module lets torchfcn.models import.
        sys.modules.setdefault("fcn", types.ModuleType("fcn"))
    try:
        return importlib.import_module(module if module != "torchfcn" else "torchfcn.models")
    except ImportError as err:
        raise PeerMissing(
            f"peer package {module!r} is not installed ({err}); install it with "
            f"`{PEERS[module]}` or skip it"
        ) from err


class OutOnly(nn.Module):
    """torchvision's segmentation models return {"out": logits}; return the tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)["out"]


class PadTo32(nn.Module):
    """Pad the input to a multiple of 32 and crop the logits back (smp needs divisible sizes)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        logits = self.net(F.pad(images, (0, (-w) % 32, 0, (-h) % 32)))
        return logits[..., :h, :w]


def bf16_upsamplers(model: nn.Module) -> nn.Module:
    """Swap every UpConv of `model` for a plain ConvTranspose2d with the same weights, in place:
    the network as it runs without UpConv's fp32 rule, so the benchmark can show what it buys.
    """
    for name, child in model.named_children():
        if isinstance(child, UpConv):
            plain = nn.ConvTranspose2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride,
                child.padding, bias=child.bias is not None,
            )  # fmt: skip
            plain.load_state_dict(child.state_dict())
            setattr(model, name, plain)
        else:
            bf16_upsamplers(child)
    return model


def build(name: str, num_classes: int) -> nn.Module:
    """The network called `name` (see the module docstring), randomly initialised."""
    if name.startswith("torchfcn:"):
        return getattr(import_peer("torchfcn"), name.split(":")[1])(n_class=num_classes)
    if name.startswith("smp:"):
        smp = import_peer("segmentation_models_pytorch")
        arch, encoder = name.split(":")[1].split("/")
        return getattr(smp, arch)(encoder, encoder_weights=None, classes=num_classes)
    if name.startswith("torchvision:"):
        builder = getattr(importlib.import_module("torchvision.models.segmentation"), name[12:])
        net = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        return OutOnly(net)
    arch, _, backbone = name.partition("/")
    return build_model(arch, backbone, num_classes, weights=None)


def available(name: str) -> str | None:
    """None when `name` can be built here, else the reason it cannot."""
    try:
        if name.startswith("torchfcn:"):
            import_peer("torchfcn")
        elif name.startswith("smp:"):
            import_peer("segmentation_models_pytorch")
    except PeerMissing as err:
        return str(err)
    return None

"""timm encoders as backbones: ``timm:<name>`` for any model timm can build.

Features come from timm's ``features_only=True``; each feature's ``feature_info.reduction()``
is its output stride, so a CNN such as ``timm:convnext_tiny`` gives strides 4-32 and
``timm:efficientnet_b0`` 2-32. Plain ViTs (one token map at the patch stride) go through the
simple feature pyramid of vit.py. Strides must divide 32, the multiple SegmentationModel pads to.

``weights`` follows weights.py's rules: None is random init; "imagenet" is the model's default
pretrained tag (``resnet50d`` -> ``timm/resnet50d.ra2_in1k``; name a tag with
``timm:resnet50d.a1_in1k``), taken from the Hugging Face cache or downloaded, and unreachable
offline as one WeightsUnavailableError; a path is a local timm state dict (.safetensors or .pth)
loaded by timm itself. ``in_chans`` makes timm adapt a pretrained first convolution to
``in_channels`` bands with the same rule as weights.adapt_first_conv (sum for 1 band, repeat
and scale by 3/C otherwise).
"""

import logging
from functools import partial
from pathlib import Path

import huggingface_hub
import timm
from torch import Tensor, nn

from .vit import ViTBackbone
from .weights import WeightsUnavailableError, one_line, unreachable

log = logging.getLogger(__name__)
PREFIX = "timm:"
# timm modules whose models are plain ViTs taking dynamic_img_size / dynamic_img_pad
VIT_MODULES = ["vision_transformer", "deit", "eva"]
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a Hub repo


class TimmBackbone(nn.Module):
    """A timm ``features_only`` network: feature i is at stride ``feature_info.reduction()[i]``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.strides = model.feature_info.reduction()
        # a stride met twice keeps its last feature, as the dict below does
        self.channels = dict(zip(self.strides, model.feature_info.channels(), strict=True))
        odd = [s for s in self.channels if 32 % s]
        if odd:
            raise ValueError(
                f"timm features at strides {odd} do not divide 32, the multiple inputs are padded"
                " to; pick a CNN with power-of-two strides up to 32 or a plain ViT"
            )

    def forward(self, images: Tensor) -> dict[int, Tensor]:
        return dict(zip(self.strides, self.model(images), strict=True))  # (N, C_s, H/s, W/s)


def is_known(name: str) -> bool:
    """Whether timm can build ``name`` (an architecture, optionally with ``.tag``)."""
    return timm.is_model(name.split(".")[0]) and (
        "." not in name or timm.get_pretrained_cfg(name) is not None
    )


def is_vit(name: str) -> bool:
    return name.split(".")[0] in timm.list_models(module=VIT_MODULES)


def hub_source(name: str) -> tuple[str | None, str]:
    """(a cached weights file or None, the URL they download from) for timm model ``name``."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsUnavailableError(
            f"pretrained weights are unavailable for timm:{name}: timm has none for it",
            "It trains from scratch: set model.weights=null",
        )
    if not cfg.hf_hub_id:  # an old release URL only: timm caches it like torch.hub
        return None, cfg.url
    for file in HUB_FILES:
        cached = huggingface_hub.try_to_load_from_cache(cfg.hf_hub_id, file)
        if isinstance(cached, str):
            return cached, ""
    return None, f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{HUB_FILES[0]}"


def pretrained_file(name: str, weights: str) -> str | None:
    """The file to load for ``weights``; None when timm may download them itself."""
    if weights != "imagenet":
        file = Path(weights).expanduser()
        if not file.is_file():
            raise WeightsUnavailableError(
                f"weights file {file} does not exist",
                "Pass an existing timm state dict (.safetensors or .pth) with"
                " model.weights=/path/to/file, model.weights=imagenet to download, or"
                " model.weights=null for random init",
            )
        return str(file)
    cached, url = hub_source(name)
    reason = None if cached else unreachable(url)
    if reason is None:
        return cached
    raise WeightsUnavailableError(
        f"pretrained weights are unavailable for timm:{name}: downloading {url} failed ({reason})",
        f"Without internet, download that file elsewhere and pass it with"
        f" model.weights=/path/to/{Path(url).name}, or set model.weights=null to train from"
        " random init",
    )


def create(name: str, weights: str | None, required: bool, **kwargs) -> nn.Module:
    """``timm.create_model(name, features_only=True, **kwargs)`` with ``weights`` loaded."""
    file = None
    if weights is not None:
        try:
            file = pretrained_file(name, weights)
        except WeightsUnavailableError as err:
            if required:
                raise
            log.warning("%s: training starts from random init", err.problem)
            weights = None
    overlay = {"pretrained_cfg_overlay": {"file": file}} if file else {}
    try:
        return timm.create_model(
            name, pretrained=weights is not None, features_only=True, **overlay, **kwargs
        )
    except (OSError, RuntimeError) as err:  # a cut download, a file of another model
        if weights is None:
            raise
        raise WeightsUnavailableError(
            f"weights {file or 'imagenet'} could not be loaded into timm:{name} ({one_line(err)})",
            "Pass a state dict of this timm model, or set model.weights=null",
        ) from err


def timm_backbone(
    name: str, weights: str | None = None, weights_required: bool = True, in_channels: int = 3
) -> nn.Module:
    """``timm:<name>`` as a backbone: TimmBackbone for CNNs, ViTBackbone for plain ViTs."""
    if is_vit(name):
        vit = create(
            name, weights, weights_required, in_chans=in_channels, out_indices=(-1,),
            dynamic_img_size=True, dynamic_img_pad=True,
        )  # fmt: skip
        return ViTBackbone(vit)
    return TimmBackbone(create(name, weights, weights_required, in_chans=in_channels))


def builder(backbone: str):
    """The builder of backbone key ``timm:<name>``, or None when timm has no such model."""
    if not backbone.startswith(PREFIX) or not is_known(backbone.removeprefix(PREFIX)):
        return None
    return partial(timm_backbone, backbone.removeprefix(PREFIX))

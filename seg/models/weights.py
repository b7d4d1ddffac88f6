"""Pretrained weights: torchvision's ImageNet weights, a local state dict, or random init.

`weights` is None (random init), "imagenet" (torchvision's DEFAULT weights, from the torch hub
cache or downloaded) or a path to a local torchvision-format state dict, for machines without
internet such as offline clusters.

Images with other than 3 channels keep the pretrained first convolution by adapting it, with
segmentation_models_pytorch's rule: for 1 channel the RGB filters are summed; for C channels the
RGB filters are repeated cyclically (R, G, B, R, ...) and scaled by 3 / C, so that the first
activations keep the magnitude the pretrained layers after them expect.
"""

import logging
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from seg.errors import WeightsUnavailableError

log = logging.getLogger(__name__)

REACH_TIMEOUT_S = 3.0  # torch.hub has no timeout: probe the URL first so offline runs fail fast


def one_line(err: BaseException) -> str:
    """An exception as one short line."""
    return " ".join(str(err).split())[:300] or type(err).__name__


def imagenet_url(name: str) -> str:
    """URL of torchvision's DEFAULT ImageNet weights for model `name`."""
    try:
        return torchvision.models.get_model_weights(name).DEFAULT.url
    except ValueError as err:
        raise WeightsUnavailableError(
            f"ImageNet weights are unavailable for {name}: torchvision has none for it",
            "It trains from scratch: set model.weights=null",
        ) from err


def unreachable(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why `url` cannot be reached within `timeout` seconds, or None when it answers."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except Exception as err:  # URLError, timeouts, HTTP errors: all mean "cannot download"
        return one_line(err)


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict for `name`: from the hub cache, else downloaded."""
    url = imagenet_url(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return local_state_dict(str(cached))
    reason = unreachable(url)
    if reason is None:
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
        except Exception as err:  # a download cut off halfway, a bad hash, a full disk
            reason = one_line(err)
    raise WeightsUnavailableError(
        f"ImageNet weights are unavailable for {name}: downloading {url} failed ({reason})",
        f"Without internet, download that file elsewhere and pass it with"
        f" model.weights=/path/to/{cached.name} (or copy it to {cached}), or set"
        " model.weights=null to train from random init",
    )


def local_state_dict(path: str) -> dict[str, Tensor]:
    """A state dict saved with torch.save at `path`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsUnavailableError(
            f"weights file {file} does not exist",
            "Pass an existing torchvision-format state dict with model.weights=/path/to/file.pth,"
            " model.weights=imagenet to download, or model.weights=null for random init",
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(
            f"weights file {file} could not be read ({one_line(err)})",
            "Pass a state dict saved with torch.save(model.state_dict(), path) as"
            " model.weights=/path/to/file.pth",
        ) from err


def load_weights(model: nn.Module, name: str, weights: str | None, required: bool = True) -> None:
    """Load `weights` into `model` (torchvision model `name`, or our own backbone) in place.

    When the weights cannot be had, required=True raises a RuntimeError saying which URL or file
    failed and how to pass a local file; required=False logs one warning line and keeps the
    random init. A file whose tensors do not fit the model always raises.
    """
    if weights is None:
        return
    try:
        state = imagenet_state_dict(name) if weights == "imagenet" else local_state_dict(weights)
    except WeightsUnavailableError as err:
        if required:
            raise
        log.warning("%s: training starts from random init", err.problem)
        return
    check_state_dict(model, name, weights, state)
    model.load_state_dict(state)


def check_state_dict(model: nn.Module, name: str, source: str, state: object) -> None:
    """Raise a clear ValueError unless `state` holds exactly the tensors of `model`."""
    own = model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"weights {source} hold a {type(state).__name__}, not a state dict")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"weights {source} are not a torchvision-format state dict of {name}: missing keys"
            f" {missing[:4]}, unexpected keys {unexpected[:4]}, shape mismatches {wrong[:4]}."
            f" Save one with torch.save(torchvision.models.{name}().state_dict(), path) (for"
            " our own backbones, model.backbone.state_dict())"
        )


@torch.no_grad()
def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first Conv2d of `model` `in_channels` inputs, keeping what its weights learned."""
    if in_channels < 1:
        raise ValueError(f"model.in_channels must be at least 1, got {in_channels}")
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    )  # fmt: skip
    old = conv.weight  # (out, 3, k, k)
    if in_channels == 1:
        new.weight.copy_(old.sum(dim=1, keepdim=True))
    else:
        index = torch.arange(in_channels) % old.shape[1]
        new.weight.copy_(old[:, index] * (old.shape[1] / in_channels))
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)

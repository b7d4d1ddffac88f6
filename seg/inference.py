"""Whole-image logits: plain, horizontal-flip TTA, multi-scale TTA and sliding-window inference.

``model`` is any callable mapping normalised images ``(N, 3, h, w)`` to logits ``(N, K, h, w)``
for any ``h, w`` (SegmentationModel pads to a multiple of 32 itself). ``infer`` returns logits
``(N, K, H, W)`` at the input's resolution.

Views are combined by averaging logits: overlapping windows as in mmsegmentation's slide
inference, and TTA views (scales x flips), which makes the prediction the class of highest
geometric-mean probability across views.
"""

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

Model = Callable[[Tensor], Tensor]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Offsets of windows of ``window`` pixels every ``stride`` over ``size``; the last is flush."""
    last = max(size - window, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)  # cover the far edge without running past it
    return starts


def sliding_window(
    model: Model, images: Tensor, window: Sequence[int], stride: Sequence[int]
) -> Tensor:
    """Logits from ``window``-sized crops every ``stride`` pixels, averaged where they overlap."""
    n, _, h, w = images.shape
    wh, ww = min(window[0], h), min(window[1], w)  # a window larger than the image is the image
    logits, counts = None, images.new_zeros(1, 1, h, w)
    for y in window_starts(h, wh, stride[0]):
        for x in window_starts(w, ww, stride[1]):
            out = model(images[:, :, y : y + wh, x : x + ww])  # (N, K, wh, ww)
            if logits is None:
                logits = out.new_zeros(n, out.shape[1], h, w)
            logits[:, :, y : y + wh, x : x + ww] += out
            counts[:, :, y : y + wh, x : x + ww] += 1
    return logits / counts


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int or an ``[h, w]`` pair of positive ints -> ``(h, w)``."""
    h, w = (value, value) if isinstance(value, int) else tuple(value)
    if h < 1 or w < 1:
        raise ValueError(f"inference.{name}={value} must be a positive int or [height, width]")
    return int(h), int(w)


def infer(
    model: Model,
    images: Tensor,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
) -> Tensor:
    """Logits ``(N, K, H, W)`` averaged over ``scales`` x (image, mirrored image if ``flip``).

    ``window`` switches on sliding-window inference at every scale; ``stride`` defaults to half
    the window.
    """
    if not scales or min(scales) <= 0:
        raise ValueError(
            f"inference.scales={list(scales)} must be a non-empty list of positive numbers"
        )
    if window is not None:
        window = pair(window, "window")
        stride = (
            pair(stride, "stride") if stride else (max(1, window[0] // 2), max(1, window[1] // 2))
        )
    h, w = images.shape[-2:]
    total = 0
    for scale in scales:
        size = (round(h * scale), round(w * scale))
        x = F.interpolate(images, size, mode="bilinear") if size != (h, w) else images
        for mirrored in (False, True) if flip else (False,):
            view = x.flip(-1) if mirrored else x
            logits = model(view) if window is None else sliding_window(model, view, window, stride)
            logits = logits.flip(-1) if mirrored else logits
            if size != (h, w):
                logits = F.interpolate(logits, (h, w), mode="bilinear")  # align_corners=False
            total = total + logits
    return total / (len(scales) * (2 if flip else 1))

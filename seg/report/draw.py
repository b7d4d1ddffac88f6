"""Palette colouring, side-by-side panels with class legends, error maps and overlays.

numpy and PIL only: predict's onnxruntime path draws with these functions and never imports
torch. Masks and images may be torch tensors all the same (``as_array``).
"""

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ArrayLike = Any  # a numpy array or a torch tensor: as_array reads both, importing no torch

IGNORE_COLOUR = (224, 224, 192)  # the colour VOC's own palette gives the 255 void label
WRONG_COLOUR = (230, 30, 30)
SWATCH, FONT_SIZE, PAD = 14, 13, 6


def as_array(values: ArrayLike) -> np.ndarray:
    """A numpy array of ``values``: tensors are detached and moved to the CPU."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
        values = (values.float() if values.dtype.is_floating_point else values).numpy()
    return np.asarray(values)


def colourise(mask: ArrayLike, palette: list[list[int]], ignore_index: int = 255) -> np.ndarray:
    """Class indices ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 in the dataset palette."""
    mask = as_array(mask)
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    lut[ignore_index] = IGNORE_COLOUR
    return lut[mask.clip(0, 255).astype(np.uint8)]


def denormalise(image: ArrayLike, mean: list[float], std: list[float]) -> np.ndarray:
    """A normalised ``(C, H, W)`` tensor -> RGB ``(H, W, 3)`` uint8 (bands 1-3, or grey)."""
    mean_a = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std_a = np.asarray(std, np.float32).reshape(-1, 1, 1)
    rgb = np.clip(as_array(image).astype(np.float32) * std_a + mean_a, 0, 1) * 255
    rgb = rgb[:3] if rgb.shape[0] >= 3 else np.repeat(rgb[:1], 3, axis=0)
    return np.rint(rgb).astype(np.uint8).transpose(1, 2, 0)


def panel(parts: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """RGB uint8 arrays of equal height side by side with white gaps: image | truth | ..."""
    image = parts[0]
    spacer = np.full((image.shape[0], gap, 3), 255, np.uint8)
    row = []
    for part in parts:
        row += [part, spacer]
    return np.concatenate(row[:-1], axis=1)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colourised mask over an RGB image."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return blend.round().astype(np.uint8)


def error_map(
    image: np.ndarray, truth: np.ndarray, pred: np.ndarray, ignore_index: int = 255
) -> np.ndarray:
    """Wrong pixels in red over a dimmed grey image; ignored pixels in the void colour."""
    truth, pred = as_array(truth), as_array(pred)
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.5 + 64  # (H, W, 1)
    out = np.repeat(grey, 3, axis=2).round().astype(np.uint8)
    out[(pred != truth) & (truth != ignore_index)] = WRONG_COLOUR
    out[truth == ignore_index] = IGNORE_COLOUR
    return out


def present_classes(*masks: ArrayLike, num_classes: int) -> list[int]:
    """The class indices (below ``num_classes``) occurring in any of ``masks``, sorted."""
    values = np.unique(np.concatenate([as_array(m).ravel() for m in masks]))
    return [int(v) for v in values if v < num_classes]


def legend(
    items: list[tuple[str, tuple[int, int, int]]], width: int, background: int = 255
) -> np.ndarray:
    """Colour swatches with their names, wrapped into rows ``width`` pixels wide: ``(h, width, 3)``.

    Each swatch is a solid square of exactly the item's colour (at least ``SWATCH`` pixels a
    side), so the legend can be checked pixel by pixel. Text and swatches grow with ``width``, so
    that a wide panel shown scaled down in a page keeps a legible legend.
    """
    scale = max(1.0, width / 1100)
    swatch, pad = round(SWATCH * scale), round(PAD * scale)
    font = ImageFont.load_default(size=round(FONT_SIZE * scale))
    spots, x, y = [], pad, pad
    for name, colour in items:
        w = swatch + pad + int(font.getlength(name)) + 2 * pad
        if x + w > width and x > pad:
            x, y = pad, y + swatch + pad
        spots.append((x, y, name, tuple(int(c) for c in colour)))
        x += w
    canvas = Image.new("RGB", (width, y + swatch + pad + pad // 2), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for x, y, name, colour in spots:
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=colour)
        draw.text(
            (x + swatch + pad, y + swatch // 2), name, fill=(20, 20, 20), font=font, anchor="lm"
        )
    return np.asarray(canvas)


def class_legend(
    classes: list[int], class_names: list[str], palette: list[list[int]], width: int
) -> np.ndarray:
    """The legend of ``classes`` (indices) in the dataset palette."""
    return legend([(class_names[i], tuple(palette[i])) for i in classes], width)


def with_legend(picture: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """``picture`` with a legend strip of the same width underneath."""
    return np.concatenate([picture, strip], axis=0)


def legend_panel(
    image: np.ndarray,
    truth: ArrayLike | None,
    pred: ArrayLike,
    class_names: list[str],
    palette: list[list[int]],
    ignore_index: int = 255,
) -> np.ndarray:
    """image | ground truth | prediction (or image | prediction), with the legend underneath."""
    masks = [pred] if truth is None else [truth, pred]
    classes = present_classes(*masks, num_classes=len(class_names))
    coloured = [colourise(m, palette, ignore_index) for m in masks]
    row = panel([image, *coloured])
    items = [(class_names[i], tuple(palette[i])) for i in classes]
    if truth is not None and (as_array(truth) == ignore_index).any():
        items.append(("ignored", IGNORE_COLOUR))
    return with_legend(row, legend(items, row.shape[1]))


def failure_panel(
    image: np.ndarray,
    truth: ArrayLike,
    pred: ArrayLike,
    class_names: list[str],
    palette: list[list[int]],
    ignore_index: int = 255,
) -> np.ndarray:
    """image | ground truth | prediction | error map, with the legend of classes and errors."""
    truth, pred = as_array(truth), as_array(pred)
    classes = present_classes(truth, pred, num_classes=len(class_names))
    parts = [colourise(m, palette, ignore_index) for m in (truth, pred)]
    row = panel([image, *parts, error_map(image, truth, pred)])
    items = [(class_names[i], tuple(palette[i])) for i in classes] + [("wrong", WRONG_COLOUR)]
    if (truth == ignore_index).any():
        items.append(("ignored", IGNORE_COLOUR))
    return with_legend(row, legend(items, row.shape[1]))

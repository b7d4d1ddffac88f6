"""Prediction images written to disk: palette PNG masks, panels and overlays with legends."""

from pathlib import Path

import numpy as np
from PIL import Image

from seg.report.draw import (
    class_legend,
    colourise,
    legend_panel,
    overlay,
    present_classes,
    with_legend,
)


def save_mask(path: Path, pred: np.ndarray, palette: list[list[int]]) -> None:
    """Class indices ``(H, W)`` as a palette PNG: pixel values are the classes (VOC layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(pred.astype(np.uint8), mode="P")
    flat = [c for colour in palette for c in colour][:768]
    png.putpalette(flat + [0] * (768 - len(flat)))
    png.save(path)


def save_jpeg(path: Path, picture: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, quality=90)


def save_prediction(
    folder: Path,
    split: str,
    image_id: str,
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    class_names: list[str],
    palette: list[list[int]],
    ignore_index: int = 255,
) -> None:
    """The mask in the VOC results layout and an image | truth | prediction panel under folder.

    The panel carries the legend of the classes present in the truth or the prediction.
    """
    results = folder / "results/VOC2012/Segmentation" / f"comp6_{Path(split).stem}_cls"
    save_mask(results / f"{image_id}.png", pred, palette)
    picture = legend_panel(image, truth, pred, class_names, palette, ignore_index)
    save_jpeg(folder / "panels" / f"{image_id}.jpg", picture)


def save_overlay(
    path: Path, image: np.ndarray, pred: np.ndarray, class_names: list[str], palette: list
) -> None:
    """The prediction's colours blended over the image, with the legend of predicted classes."""
    blend = overlay(image, colourise(pred, palette))
    classes = present_classes(pred, num_classes=len(class_names))
    save_jpeg(path, with_legend(blend, class_legend(classes, class_names, palette, blend.shape[1])))

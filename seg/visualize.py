"""Palette colouring, side-by-side panels and confusion-matrix figures."""

import numpy as np
import torch
from torch import Tensor

IGNORE_COLOUR = (224, 224, 192)  # the colour VOC's own palette gives the 255 void label


def colourise(
    mask: Tensor | np.ndarray, palette: list[list[int]], ignore_index: int = 255
) -> np.ndarray:
    """Class indices ``(H, W)`` -> RGB ``(H, W, 3)`` uint8 in the dataset palette."""
    mask = torch.as_tensor(mask).cpu().numpy()
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    lut[ignore_index] = IGNORE_COLOUR
    return lut[mask.clip(0, 255).astype(np.uint8)]


def denormalise(image: Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    """A normalised ``(C, H, W)`` tensor -> RGB ``(H, W, 3)`` uint8 (bands 1-3, or grey)."""
    mean_t = torch.tensor(mean, device=image.device).view(-1, 1, 1)
    std_t = torch.tensor(std, device=image.device).view(-1, 1, 1)
    rgb = (image.float() * std_t + mean_t).clamp(0, 1) * 255
    rgb = rgb[:3] if rgb.shape[0] >= 3 else rgb[:1].expand(3, -1, -1)
    return rgb.round().byte().permute(1, 2, 0).cpu().numpy()


def panel(
    image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, gap: int = 4
) -> np.ndarray:
    """Image | ground truth | prediction (RGB uint8 arrays of equal size) side by side."""
    parts = [image] + ([truth] if truth is not None else []) + [pred]
    spacer = np.full((image.shape[0], gap, 3), 255, np.uint8)
    row = []
    for part in parts:
        row += [part, spacer]
    return np.concatenate(row[:-1], axis=1)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colourised mask over an RGB image."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return blend.round().astype(np.uint8)


def confusion_figure(matrix: Tensor, class_names: list[str]):
    """A row-normalised confusion matrix as a matplotlib figure (rows: truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.double().cpu()
    rows = m.sum(dim=1, keepdim=True).clamp(min=1)
    k = len(class_names)
    size = max(4.0, 0.4 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow((m / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    fig.tight_layout()
    return fig

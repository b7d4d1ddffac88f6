"""Every matplotlib figure of the reports, and matplotlib set up once (the Agg backend: files, no
screen): mIoU against step, per-class IU bars, the confusion matrix."""

import numpy as np
from torch import Tensor


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, list[tuple[int, float]]], split: str):
    """A matplotlib figure of mIoU (%) against training step, one line per run."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for run, points in runs.items():
        steps, values = zip(*points, strict=True)
        ax.plot(steps, [100 * v for v in values], marker="o", label=run)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{split} mean IU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def iou_bars(results: list[dict]):
    """Per-class IU (%) as horizontal bars, one colour per checkpoint, classes top to bottom."""
    plt = pyplot()

    names = list(results[0]["iou"])
    height = 1 / (len(results) + 0.5)
    fig, ax = plt.subplots(figsize=(5, 0.8 + 0.3 * len(names) * max(1, len(results) / 2)), dpi=90)
    for i, r in enumerate(results):
        values = [100 * (r["iou"][n] or 0) for n in names]
        ax.barh(np.arange(len(names)) + i * height, values, height, label=r["checkpoint"])
    ax.set_yticks(np.arange(len(names)) + height * (len(results) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IU (%)")
    ax.grid(axis="x", alpha=0.3)
    if len(results) > 1:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: Tensor, class_names: list[str], title: str = ""):
    """A row-normalised confusion matrix as a matplotlib figure (rows: truth).

    560 pixels square whatever the class count, so TensorBoard's image card shows it whole
    with legible names; cells carry their percentage when the classes are few enough.
    """
    plt = pyplot()

    m = matrix.double().cpu()
    normalised = (m / m.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    k = len(class_names)
    font = min(11.0, max(6.0, 160 / k))
    fig, ax = plt.subplots(figsize=(7, 7), dpi=80)
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=font)
    ax.set_yticks(range(k), class_names, fontsize=font)
    if k <= 15:
        for (i, j), value in np.ndenumerate(normalised):
            if value >= 0.005:
                colour = "white" if value > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{100 * value:.0f}",
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=font * 0.85,
                )
    ax.set_xlabel("predicted", fontsize=font + 1)
    ax.set_ylabel("ground truth", fontsize=font + 1)
    if title:
        ax.set_title(title, fontsize=font + 2)
    fig.tight_layout()
    return fig

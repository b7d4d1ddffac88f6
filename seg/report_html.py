"""report.html: one self-contained page per evaluation, from the numbers of metrics.json.

The page holds the comparison table, per-class IU (bars and numbers), the confusion matrix and
the per-image table of the best checkpoint, the mIoU-against-step curve, and the worst images as
failure panels. Figures and panels are embedded as ``data:`` URIs, so the file opens from disk
with no network and can be mailed or archived alone.
"""

import base64
import heapq
import io
import time
from pathlib import Path

import numpy as np
import torch
from jinja2 import Environment
from PIL import Image

from seg.report import FACTS, SCORES, curves, percent, plot_curves
from seg.report_template import PAGE
from seg.visualize import confusion_figure


class WorstImages:
    """The ``k`` images of lowest per-image mIoU seen so far, with their panels as JPEG bytes.

    Ties keep the image seen first; images with no labelled pixel are never kept.
    """

    def __init__(self, k: int) -> None:
        self.k, self.count = k, 0
        self.heap: list[tuple[float, int, str, bytes]] = []  # (-mIoU, -order): best on top

    def wants(self, miou: float | None) -> bool:
        """Whether an image of this mIoU would enter the k worst (before drawing its panel)."""
        if miou is None or self.k <= 0:
            return False
        return len(self.heap) < self.k or miou < -self.heap[0][0]

    def add(self, image_id: str, miou: float, picture: np.ndarray) -> None:
        self.count += 1
        if not self.wants(miou):
            return
        entry = (-miou, -self.count, image_id, jpeg(picture))
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        else:
            heapq.heapreplace(self.heap, entry)

    def items(self) -> list[dict]:
        """The kept images, lowest mIoU first: ``id``, ``mIoU``, ``jpeg``."""
        ordered = sorted(self.heap, key=lambda e: (-e[0], -e[1]))
        return [{"id": i, "mIoU": -m, "jpeg": data} for m, _, i, data in ordered]


def jpeg(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def data_uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def figure_uri(figure) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    plt.close(figure)
    return data_uri(buffer.getvalue(), "png")


def iou_bars(results: list[dict]):
    """Per-class IU (%) as horizontal bars, one colour per checkpoint, classes top to bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def comparison(results: list[dict]) -> dict:
    """The comparison table's header and rows, formatted as tables.md formats them."""
    rows = [[r[k] for k in FACTS] + [percent(r[k]) for k in SCORES] for r in results]
    return {"header": list(FACTS) + list(SCORES.values()), "rows": rows}


def render(
    results: list[dict],
    failures: list[dict],
    per_image: list[dict],
    worst: list[dict],
    split: str,
    palette: list[list[int]],
) -> str:
    """The page as a string; ``per_image`` and ``worst`` are those of the best checkpoint."""
    best = max(results, key=lambda r: r["mIoU"])
    names = list(best["iou"])
    runs = curves(results)
    page = Environment(autoescape=True).from_string(PAGE)
    return page.render(
        split=split,
        results=results,
        failures=failures,
        best=best,
        images=len(per_image),
        created=time.strftime("%Y-%m-%d %H:%M"),
        pct=percent,
        comparison=comparison(results),
        class_names=names,
        colours=["#{:02x}{:02x}{:02x}".format(*palette[i]) for i in range(len(names))],
        bars=figure_uri(iou_bars(results)),
        confusion=figure_uri(confusion_figure(torch.tensor(best["confusion"]), names)),
        curve=figure_uri(plot_curves(runs, split)) if runs else None,
        per_image=sorted(per_image, key=lambda r: (r["mIoU"] is None, r["mIoU"] or 0)),
        worst=[w | {"uri": data_uri(w["jpeg"], "jpeg")} for w in worst],
    )


def write_report(out_dir: Path, *args, **kwargs) -> Path:
    """Write ``render(...)`` to out_dir/report.html."""
    path = out_dir / "report.html"
    path.write_text(render(*args, **kwargs), encoding="utf-8")
    return path

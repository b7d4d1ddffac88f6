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

from seg.report.figures import confusion_figure, iou_bars, plot_curves, pyplot
from seg.report.tables import comparison, curves, percent
from seg.report.template import PAGE


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
    plt = pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    plt.close(figure)
    return data_uri(buffer.getvalue(), "png")


def comparison_rows(results: list[dict]) -> dict:
    """The comparison table's header and rows, as tables.md has them."""
    header, rows = comparison(results)
    return {"header": header, "rows": rows}


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
        comparison=comparison_rows(results),
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

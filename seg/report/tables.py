"""What evaluation writes: paper-style tables, JSON/CSV/Markdown files, curves, prediction images.

A result is a plain dict per checkpoint: ``checkpoint`` (a short label), ``path``, ``arch,
backbone, epoch, step``, the scores ``pixel_acc, mean_acc, mIoU, fwIoU`` as fractions, ``iou``
and ``acc`` dicts by class name (None where undefined) and ``confusion``, the ``(K, K)`` matrix
of pixel counts (rows: truth). Per-image rows (``per_image.csv``) hold ``checkpoint, id,
pixel_acc, mIoU, worst_class`` and an ``iou`` dict, from ``seg.evaluation.image_scores``.
Tables show percentages with one decimal, as Table 2 of Long et al.
"""

import csv
import json
import math
from pathlib import Path

from torch import Tensor

from seg.metrics import scores
from seg.report.figures import plot_curves

SCORES = {"pixel_acc": "pixel acc.", "mean_acc": "mean acc.", "mIoU": "mean IU", "fwIoU": "f.w. IU"}
FACTS = ("checkpoint", "arch", "backbone", "epoch", "step")


def result_row(label: str, path: Path, info: dict, matrix: Tensor, class_names: list[str]) -> dict:
    """One checkpoint's result dict from its facts and its confusion matrix."""
    result = scores(matrix)
    row = {"checkpoint": label, "path": str(path)}
    row |= {k: info[k] for k in FACTS[1:]} | {k: float(result[k]) for k in SCORES}
    for key in ("iou", "acc"):
        values = [None if math.isnan(v) else float(v) for v in result[key]]
        row[key] = dict(zip(class_names, values, strict=True))
    row["confusion"] = matrix.tolist()
    return row


def percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table whose columns line up in a terminal too."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def comparison(results: list[dict]) -> tuple[list[str], list[list]]:
    """One row per checkpoint: checkpoint, arch, backbone, epoch, step and the four scores."""
    rows = [[r[k] for k in FACTS] + [percent(r[k]) for k in SCORES] for r in results]
    return list(FACTS) + list(SCORES.values()), rows


def comparison_table(results: list[dict]) -> str:
    return markdown_table(*comparison(results))


def class_table(results: list[dict]) -> str:
    """Per-class IoU: one row per class; one column per checkpoint (IoU and acc. for one)."""
    names = list(results[0]["iou"])
    if len(results) == 1:
        r = results[0]
        rows = [[n, percent(r["iou"][n]), percent(r["acc"][n])] for n in names]
        return markdown_table(["class", "IU", "acc."], rows)
    rows = [[n] + [percent(r["iou"].get(n)) for r in results] for n in names]
    return markdown_table(["class"] + [r["checkpoint"] for r in results], rows)


def write_results(out_dir: Path, results: list[dict], failures: list[dict], split: str) -> str:
    """Write metrics.json, metrics.csv, per_class.csv and tables.md; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"split": split, "results": results, "failures": failures}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=False))
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(FACTS) + list(SCORES))
        writer.writerows([r[k] for k in FACTS] + [r[k] for k in SCORES] for r in results)
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["checkpoint", "class", "iou", "acc"])
        for r in results:
            writer.writerows([r["checkpoint"], n, r["iou"][n], r["acc"][n]] for n in r["iou"])
    text = f"## Results on {split}\n\n{comparison_table(results)}\n\n## Per-class IU (%)\n\n"
    text += class_table(results) + "\n"
    if failures:
        text += "\n## Not evaluated\n\n" + "\n".join(
            f"- {f['checkpoint']}: {f['error']}" for f in failures
        )
    (out_dir / "tables.md").write_text(text + "\n")
    return text


def write_per_image(out_dir: Path, rows: list[dict], class_names: list[str]) -> Path:
    """per_image.csv: checkpoint, id, pixel_acc, mIoU, worst_class, then IoU per class."""
    path = out_dir / "per_image.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["checkpoint", "id", "pixel_acc", "mIoU", "worst_class", *class_names])
        for r in rows:
            fixed = [r["checkpoint"], r["id"], r["pixel_acc"], r["mIoU"], r["worst_class"]]
            writer.writerow(["" if v is None else v for v in fixed + list(r["iou"].values())])
    return path


def curves(results: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """mIoU by step for each run (the folder holding ``checkpoints/``) with two steps or more."""
    runs: dict[str, dict[int, float]] = {}
    for r in results:
        path = Path(r["path"])
        run = next((p.parent for p in path.parents if p.name == "checkpoints"), path.parent)
        if r["step"] is not None:
            runs.setdefault(run.name, {})[r["step"]] = r["mIoU"]  # last.ckpt repeats a step
    return {run: sorted(steps.items()) for run, steps in runs.items() if len(steps) > 1}


def write_curves(out_dir: Path, results: list[dict], split: str) -> Path | None:
    """mIoU against step for runs with several checkpoints: a PNG and TensorBoard scalars."""
    runs = curves(results)
    if not runs:
        return None
    from torch.utils.tensorboard import SummaryWriter

    figure = plot_curves(runs, split)
    figure.savefig(out_dir / "mIoU_vs_step.png", dpi=120)
    for run, points in runs.items():
        with SummaryWriter(out_dir / "tensorboard" / run) as writer:
            for step, value in points:
                writer.add_scalar(f"{split}/mIoU", value, step)
    with SummaryWriter(out_dir / "tensorboard") as writer:
        writer.add_figure(f"{split}/mIoU_vs_step", figure)
    return out_dir / "mIoU_vs_step.png"

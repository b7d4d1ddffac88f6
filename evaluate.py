"""Evaluate checkpoints on a labelled split: ``python evaluate.py ckpt_path=...``.

``evaluate(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the
thin Hydra entry point. See configs/eval.yaml for the options. Prediction on unlabelled images
is predict.py, ONNX export is export.py; all three pick checkpoints with
``seg.checkpoint.select``.
"""

import logging
import os
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seg.checkpoint.select import (
    checkpoint_paths,
    inference_options,
    labels,
    network,
    pick_device,
    stem,
)
from seg.cli import expected_errors, run
from seg.config import validate
from seg.errors import CheckpointError
from seg.evaluation import evaluate_batch, image_matrices, image_scores
from seg.metrics import ConfusionMatrix
from seg.report import tables
from seg.report.draw import denormalise, failure_panel
from seg.report.html import WorstImages, write_report
from seg.report.images import save_prediction

# configs/paths/default.yaml resolves relative paths against the repository folder.
os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

log = logging.getLogger("seg")


def matched(datamodule, info: dict, cfg: DictConfig):
    """``datamodule``, or one like it reading the bands and normalising with the mean/std the
    checkpoint was trained with: scores depend on them, and the network reads only those bands."""
    trained = ([float(m) for m in info["mean"]], [float(s) for s in info["std"]])
    bands = int(info.get("in_channels", 3))
    if trained == (list(datamodule.mean), list(datamodule.std)) and bands == datamodule.in_channels:
        return datamodule
    log.info("normalising with the checkpoint's mean %s and std %s", *trained)
    other = instantiate(cfg.data, val_split=cfg.split, val_batch_size=1, test_split=None,
                        mean=trained[0], std=trained[1], in_channels=bands)  # fmt: skip
    other.setup("validate")
    return other


def run_checkpoint(path: Path, label: str, cfg: DictConfig, datamodule, out_dir: Path) -> tuple:
    """One checkpoint on the split (batch 1, native resolution, optional TTA).

    Returns its result row, its per-image rows and its worst images (``WorstImages.items``).
    """
    device = pick_device(cfg.device)
    model, info = network(path, device, datamodule)
    datamodule = matched(datamodule, info, cfg)
    k, ignore, names = datamodule.num_classes, datamodule.ignore_index, datamodule.class_names
    matrix = ConfusionMatrix(k, ignore).to(device)
    options = inference_options(cfg, info)
    folder = out_dir / "predictions" / stem(label)
    palette = info.get("palette") or datamodule.palette
    rows, worst = [], WorstImages(cfg.report.worst_k)
    with torch.inference_mode():
        for batch in tqdm(datamodule.val_dataloader(), desc=label, unit="image"):
            images, masks = batch["image"].to(device), batch["mask"].to(device)
            _, preds = evaluate_batch(model, images, masks, matrix, **options)  # (1, H, W)
            stats = image_scores(image_matrices(preds, masks, k, ignore)[0].cpu(), names)
            rows.append({"checkpoint": label, "id": batch["id"][0]} | stats)
            if not (cfg.save_predictions or worst.wants(stats["mIoU"])):
                continue
            image = denormalise(batch["image"][0], datamodule.mean, datamodule.std)
            truth, pred = batch["mask"][0].numpy(), preds[0].cpu().numpy()
            if worst.wants(stats["mIoU"]):
                picture = failure_panel(image, truth, pred, names, palette, ignore)
                worst.add(batch["id"][0], stats["mIoU"], picture)
            if cfg.save_predictions:
                save_prediction(
                    folder, cfg.split, batch["id"][0], image, truth, pred, names, palette, ignore
                )
    result = tables.result_row(label, path, info, matrix.compute().cpu(), names)
    return result, rows, worst.items()


def evaluate_all(cfg: DictConfig, paths: list[Path], out_dir: Path) -> dict:
    """Evaluate each checkpoint; with several, failures are collected instead of raised."""
    datamodule = instantiate(cfg.data, val_split=cfg.split, val_batch_size=1, test_split=None)
    datamodule.setup("validate")
    results, failures, per_image, worst = [], [], {}, {}
    for path, label in labels(paths).items():
        try:
            result, per_image[label], worst[label] = run_checkpoint(
                path, label, cfg, datamodule, out_dir
            )
            results.append(result)
        except CheckpointError as error:
            if len(paths) == 1:
                raise
            log.error("skipped %s: %s", label, error)
            failures.append({"checkpoint": label, "error": str(error)})
    if not results:
        raise CheckpointError(
            "no checkpoint could be evaluated:\n" + "\n".join(f["error"] for f in failures)
        )
    print("\n" + tables.write_results(out_dir, results, failures, cfg.split))
    tables.write_per_image(
        out_dir, [r for rows in per_image.values() for r in rows], datamodule.class_names
    )
    plot = tables.write_curves(out_dir, results, cfg.split)
    best = max(results, key=lambda r: r["mIoU"])["checkpoint"]
    palette = [list(c) for c in datamodule.palette]
    page = write_report(
        out_dir, results, failures, per_image[best], worst[best], cfg.split, palette
    )
    print(f"Results written to {out_dir}" + (f"; mIoU against step: {plot}" if plot else ""))
    print(f"Report: {page}")
    return {
        "results": results,
        "failures": failures,
        "output_dir": str(out_dir),
        "report": str(page),
    }


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate the checkpoints of cfg.ckpt_path; return the results and what was written."""
    validate(OmegaConf.to_container(cfg, resolve=True))  # before any data is read
    paths = checkpoint_paths(cfg.ckpt_path)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return evaluate_all(cfg, paths, out_dir)


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
@expected_errors
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    run(main)

"""Evaluate checkpoints, predict on images or export to ONNX: ``python evaluate.py ckpt_path=...``.

``evaluate(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the
thin Hydra entry point. See configs/eval.yaml for the options.
"""

import glob
import logging
import os
from pathlib import Path

os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from seg import report  # noqa: E402
from seg.checkpoint import CheckpointError, load_network  # noqa: E402
from seg.cli import expected_errors, run  # noqa: E402
from seg.config import ConfigError, validate  # noqa: E402
from seg.data.voc import voc_colormap  # noqa: E402
from seg.export import check_parity, export_onnx  # noqa: E402
from seg.inference import infer, read_image  # noqa: E402
from seg.metrics import ConfusionMatrix, scores  # noqa: E402
from seg.visualize import denormalise  # noqa: E402

log = logging.getLogger("seg")
IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXPORTERS = {"dynamo": True, "torchscript": False}


def checkpoint_paths(ckpt_path) -> list[Path]:
    """A file, a directory (every .ckpt below it), a glob, or a list of these -> files."""
    items = list(ckpt_path) if isinstance(ckpt_path, list | tuple | ListConfig) else [ckpt_path]
    paths = []
    for item in map(str, items):
        if Path(item).is_dir():
            found = sorted(Path(item).rglob("*.ckpt"))
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True))
        else:
            found = [Path(item)]  # a missing file is reported by read_checkpoint
        if not found:
            raise CheckpointError(
                f"ckpt_path={item} matches no checkpoint; give a .ckpt file, a run directory "
                f"(its checkpoints/ are searched) or a glob such as 'runs/*/checkpoints/*.ckpt'"
            )
        paths += found
    return list(dict.fromkeys(p.resolve() for p in paths))


def labels(paths: list[Path]) -> dict[Path, str]:
    """Short names: each path relative to the folder all of them share."""
    common = Path(os.path.commonpath([p.parent for p in paths]))
    return {p: str(p.relative_to(common)) for p in paths}


def stem(label: str) -> str:
    """A checkpoint label as one file name: run/checkpoints/last.ckpt -> run__checkpoints__last."""
    return label.removesuffix(".ckpt").replace(os.sep, "__")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def network(path: Path, device: torch.device, datamodule=None):
    """The checkpoint's network on ``device`` and its facts; refuse another class count."""
    model, info = load_network(path)
    if datamodule is not None and info["num_classes"] != datamodule.num_classes:
        raise CheckpointError(
            f"checkpoint {path} predicts {info['num_classes']} classes but the data "
            f"(data.root, data.class_names) has {datamodule.num_classes}; evaluate it on the "
            f"dataset it was trained for (data=...)"
        )
    names = info.get("class_names")
    if datamodule is not None and names and list(names) != list(datamodule.class_names):
        log.warning(
            "%s was trained with classes %s; the data names them %s",
            path,
            names,
            datamodule.class_names,
        )
    return model.to(device), info


def inference_options(cfg: DictConfig, info: dict) -> dict:
    """cfg.inference, with scales null meaning the scale the checkpoint validated at."""
    options = OmegaConf.to_container(cfg.inference)
    if options["scales"] is None:
        options["scales"] = [info.get("eval_scale", 1.0)]
    return options


def run_checkpoint(path: Path, label: str, cfg: DictConfig, datamodule, out_dir: Path) -> dict:
    """Scores of one checkpoint on the split: batch 1, native resolution, optional TTA."""
    device = pick_device(cfg.device)
    model, info = network(path, device, datamodule)
    matrix = ConfusionMatrix(datamodule.num_classes, datamodule.ignore_index).to(device)
    options = inference_options(cfg, info)
    folder = out_dir / "predictions" / stem(label)
    palette = info.get("palette") or datamodule.palette
    with torch.inference_mode():
        for batch in tqdm(datamodule.val_dataloader(), desc=label, unit="image"):
            images, masks = batch["image"].to(device), batch["mask"].to(device)
            preds = infer(model, images, **options).argmax(dim=1)  # (1, H, W)
            matrix.update(preds, masks)
            if cfg.save_predictions:
                image = denormalise(batch["image"][0], datamodule.mean, datamodule.std)
                truth, pred = batch["mask"][0].numpy(), preds[0].cpu().numpy()
                report.save_prediction(
                    folder, cfg.split, batch["id"][0], image, truth, pred, palette
                )
    result = scores(matrix.compute().cpu())
    return report.result_row(label, path, info, result, datamodule.class_names)


def evaluate_all(cfg: DictConfig, paths: list[Path], out_dir: Path) -> dict:
    """Evaluate each checkpoint; with several, failures are collected instead of raised."""
    datamodule = instantiate(cfg.data, val_split=cfg.split, val_batch_size=1, test_split=None)
    datamodule.setup("validate")
    results, failures = [], []
    for path, label in labels(paths).items():
        try:
            results.append(run_checkpoint(path, label, cfg, datamodule, out_dir))
        except CheckpointError as error:
            if len(paths) == 1:
                raise
            log.error("skipped %s: %s", label, error)
            failures.append({"checkpoint": label, "error": str(error)})
    if not results:
        raise CheckpointError(
            "no checkpoint could be evaluated:\n" + "\n".join(f["error"] for f in failures)
        )
    print("\n" + report.write_results(out_dir, results, failures, cfg.split))
    plot = report.write_curves(out_dir, results, cfg.split)
    print(f"Results written to {out_dir}" + (f"; mIoU against step: {plot}" if plot else ""))
    return {"results": results, "failures": failures, "output_dir": str(out_dir)}


def image_files(source: Path) -> list[Path]:
    """An image file, or the images of a folder."""
    files = (
        sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_TYPES)
        if source.is_dir()
        else [source]
    )
    if not files or not files[0].is_file():
        raise ConfigError(
            f"predict.input={source} is neither an image nor a folder holding images "
            f"({' '.join(IMAGE_TYPES)}); give the path of one"
        )
    return files


def predict(cfg: DictConfig, paths: list[Path], out_dir: Path) -> dict:
    """A coloured mask (palette PNG) and an overlay per unlabelled image, with one checkpoint."""
    if len(paths) != 1:
        raise ConfigError(f"predict.input needs one checkpoint, but ckpt_path matched {len(paths)}")
    files = image_files(Path(cfg.predict.input))
    model, info = network(paths[0], pick_device(cfg.device))
    mean, std, palette = info["mean"], info["std"], info.get("palette") or voc_colormap()
    options, folder = inference_options(cfg, info), out_dir / "predict"
    with torch.inference_mode():
        for file in tqdm(files, desc="predict", unit="image"):
            images = read_image(file, mean, std).to(next(model.parameters()).device)
            pred = infer(model, images, **options).argmax(dim=1)[0].cpu().numpy()  # (H, W)
            report.save_mask(folder / f"{file.stem}.png", pred, palette)
            rgb = denormalise(images[0], mean, std)
            report.save_overlay(folder / f"{file.stem}_overlay.jpg", rgb, pred, palette)
    print(f"{len(files)} masks and overlays written to {folder}")
    return {
        "predictions": [str(folder / f"{f.stem}.png") for f in files],
        "output_dir": str(out_dir),
    }


def export(cfg: DictConfig, paths: list[Path], out_dir: Path) -> dict:
    """Each checkpoint as ONNX, checked against PyTorch at two sizes."""
    if cfg.export != "onnx" or cfg.exporter not in EXPORTERS:
        raise ConfigError(
            f"export={cfg.export} exporter={cfg.exporter} is unknown; use export=onnx with "
            f"exporter one of {', '.join(EXPORTERS)}"
        )
    files = {}
    for path, label in labels(paths).items():
        model, _ = network(path, torch.device("cpu"))
        target = out_dir / f"{stem(label)}.onnx"
        export_onnx(model, target, dynamo=EXPORTERS[cfg.exporter])
        worst = check_parity(model, target, [(64, 96), (75, 50)])
        print(f"{target}: largest |onnxruntime - PyTorch| logit difference {worst:.2e}")
        files[str(target)] = worst
    return {"exported": files, "output_dir": str(out_dir)}


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate, predict or export as configured; return what was computed or written."""
    validate(OmegaConf.to_container(cfg, resolve=True))  # before any data is read
    paths = checkpoint_paths(cfg.ckpt_path)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("export"):
        return export(cfg, paths, out_dir)
    if cfg.predict.get("input"):
        return predict(cfg, paths, out_dir)
    return evaluate_all(cfg, paths, out_dir)


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
@expected_errors
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    run(main)

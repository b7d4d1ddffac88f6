"""Export checkpoints to ONNX and check them against PyTorch: ``python export.py ckpt_path=...``.

``format=pretrained`` writes model folders instead (seg/pretrained.py), uploaded with
``push_to_hub=<user/name>``.

``export(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the thin
Hydra entry point. See configs/export.yaml for the options, seg/deploy/onnx.py for the graph
(uint8 images in, class indices out, pre- and post-processing inside) and seg/deploy/quantize.py
for ``quantize=int8``.
"""

import itertools
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seg.checkpoint import CheckpointError
from seg.checkpoint.select import checkpoint_paths, labels, network, stem
from seg.cli import expected_errors, run
from seg.config import ConfigError
from seg.deploy.onnx import DeployGraph, card, check_parity, export_deployable
from seg.deploy.quantize import quantize_guarded
from seg.pretrained import push_to_hub, save_pretrained, training_config

# configs/paths/default.yaml resolves relative paths against the repository folder.
os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

EXPORTERS = {"dynamo": True, "torchscript": False}
INPUT_DTYPES = ("uint8", "float32")
FORMATS = ("onnx", "pretrained")


def export_pretrained(cfg: DictConfig) -> dict:
    """Each checkpoint as the model folder ``<label>/``; uploaded when push_to_hub is set."""
    paths, out_dir, folders = checkpoint_paths(cfg.ckpt_path), Path(cfg.paths.output_dir), {}
    if cfg.push_to_hub and len(paths) > 1:
        raise ConfigError(f"push_to_hub takes one checkpoint, but ckpt_path matched {len(paths)}")
    for path, label in labels(paths).items():
        folder = save_pretrained(path, out_dir / stem(label), cfg.metrics, cfg.license)
        pushed = push_to_hub(folder, cfg.push_to_hub) if cfg.push_to_hub else None
        folders[str(folder)] = pushed
        print(f"{folder}: model folder" + (f", uploaded: {pushed}" if pushed else ""))
    return {"folders": folders, "output_dir": str(out_dir)}


def quantize_data(cfg: DictConfig, path: Path, info: dict) -> tuple[list, list]:
    """Calibration images and labelled (image, mask) pairs from the checkpoint's dataset."""
    q, run = cfg.quantize, training_config(path)
    data = OmegaConf.load(run).data if run else None
    if data is None and q.data_root is None:
        raise ConfigError(
            f"quantize=int8 calibrates on training images, but no run config "
            f"(.hydra/config.yaml) sits beside {path}; give quantize.data_root=<dataset folder>"
        )
    if data is None:
        data = OmegaConf.create({"_target_": "seg.data.SegmentationDataModule"})
        data.class_names, data.mean, data.std = info["class_names"], info["mean"], info["std"]
        data.in_channels = info.get("in_channels", 3)
    data = OmegaConf.merge(data, q.data)
    root = q.data_root or data.root
    datamodule = instantiate(data, root=str(root), num_workers=0, download=False)
    train = datamodule.dataset(q.calibration_split)
    evaluation = datamodule.dataset(q.eval_split)
    calibration = (train.load(i)[0] for i in range(min(q.calibration_images, len(train))))
    count = len(evaluation) if q.eval_images is None else min(q.eval_images, len(evaluation))
    return calibration, [evaluation.load(i) for i in range(count)]


def export_one(cfg: DictConfig, path: Path, target: Path) -> dict:
    """One checkpoint as ``target`` (fp32), its card, and ``<stem>.int8.onnx`` when asked."""
    model, info = network(path, torch.device("cpu"))
    flip = bool(info.get("eval_flip", False)) if cfg.flip is None else bool(cfg.flip)
    if info.get("eval_scale", 1.0) != 1.0:
        print(
            f"note: {path.name} validated at scale {info['eval_scale']}; the ONNX graph runs "
            f"at the image's own scale (predict.py ... inference.scales=[1.0] matches it)"
        )
    options = dict(flip=flip, probabilities=cfg.probabilities, input_dtype=cfg.input_dtype)
    export_deployable(model, info, target, dynamo=EXPORTERS[cfg.exporter], **options)
    graph = DeployGraph(model, info["mean"], info["std"], flip, cfg.probabilities)
    differ = check_parity(graph, target, [(64, 96), (75, 50)], info.get("in_channels", 3))
    print(f"{target}: class maps of onnxruntime and PyTorch differ on {differ:.2%} of pixels")
    quantized = None
    if cfg.quantize.precision == "int8":
        int8 = target.with_suffix(".int8.onnx")
        calibration, evaluation = quantize_data(cfg, path, info)
        counted = itertools.islice(calibration, cfg.quantize.calibration_images)
        quantized = quantize_guarded(target, int8, counted, evaluation, cfg.quantize.max_drop,
                                     cfg.quantize.force)  # fmt: skip
        quantized |= {"file": int8.name, "calibration_images": cfg.quantize.calibration_images}
        print(f"{int8}: mIoU fp32 {quantized['fp32_mIoU']:.2f}, int8 "
              f"{quantized['int8_mIoU']:.2f} on {quantized['images']} images of "
              f"{cfg.quantize.eval_split}")  # fmt: skip
    target.with_suffix(".md").write_text(card(target, info, flip, cfg.input_dtype, quantized))
    return {"differing_pixels": differ, "int8": quantized}


def export(cfg: DictConfig) -> dict:
    """Each checkpoint as ``<label>.onnx`` (with its card), checked against PyTorch."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is unknown; use one of {', '.join(FORMATS)}")
    if cfg.format == "pretrained":
        return export_pretrained(cfg)
    if cfg.exporter not in EXPORTERS:
        raise ConfigError(f"exporter={cfg.exporter} is unknown; use one of {', '.join(EXPORTERS)}")
    if cfg.input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"input_dtype={cfg.input_dtype} is unknown; use uint8 or float32")
    out_dir, paths = Path(cfg.paths.output_dir), checkpoint_paths(cfg.ckpt_path)
    files, skipped = {}, {}
    for path, label in labels(paths).items():
        target = out_dir / f"{stem(label)}.onnx"
        try:
            files[str(target)] = export_one(cfg, path, target)
        except CheckpointError as error:  # one bad file in a folder: skip it, name it at the end
            if len(paths) == 1:
                raise
            skipped[str(path)] = str(error)
    for path, error in skipped.items():
        print(f"skipped {path}: {error}", file=sys.stderr)
    if not files:
        raise CheckpointError("no checkpoint could be exported:\n" + "\n".join(skipped.values()))
    return {"exported": files, "skipped": skipped, "output_dir": str(out_dir)}


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
@expected_errors
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    export(cfg)


if __name__ == "__main__":
    run(main)

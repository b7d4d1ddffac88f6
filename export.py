"""Export checkpoints to ONNX and check them against PyTorch: ``python export.py ckpt_path=...``.

``format=pretrained`` writes model folders instead (seg/pretrained.py), uploaded with
``push_to_hub=<user/name>``.

``export(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the thin
Hydra entry point. See configs/export.yaml for the options and seg/export.py for the graph.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from seg.checkpoint import CheckpointError  # noqa: E402
from seg.checkpoint.select import checkpoint_paths, labels, network, stem  # noqa: E402
from seg.cli import expected_errors, run  # noqa: E402
from seg.config import ConfigError  # noqa: E402
from seg.export import check_parity, export_onnx  # noqa: E402
from seg.pretrained import push_to_hub, save_pretrained  # noqa: E402

EXPORTERS = {"dynamo": True, "torchscript": False}
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


def export(cfg: DictConfig) -> dict:
    """Each checkpoint as ``<label>.onnx``, checked against PyTorch at two sizes."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is unknown; use one of {', '.join(FORMATS)}")
    if cfg.format == "pretrained":
        return export_pretrained(cfg)
    if cfg.exporter not in EXPORTERS:
        raise ConfigError(f"exporter={cfg.exporter} is unknown; use one of {', '.join(EXPORTERS)}")
    out_dir, paths = Path(cfg.paths.output_dir), checkpoint_paths(cfg.ckpt_path)
    files, skipped = {}, {}
    for path, label in labels(paths).items():
        try:
            model, info = network(path, torch.device("cpu"))
        except CheckpointError as error:  # one bad file in a folder: skip it, name it at the end
            if len(paths) == 1:
                raise
            skipped[str(path)] = str(error)
            continue
        target, channels = out_dir / f"{stem(label)}.onnx", info.get("in_channels", 3)
        export_onnx(model, target, dynamo=EXPORTERS[cfg.exporter], channels=channels)
        worst = check_parity(model, target, [(64, 96), (75, 50)], channels)
        print(f"{target}: largest |onnxruntime - PyTorch| logit difference {worst:.2e}")
        files[str(target)] = worst
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

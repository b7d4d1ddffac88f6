"""Which checkpoints a ``ckpt_path`` names, and each one's network ready for inference.

Shared by evaluate.py, predict.py and export.py: ``checkpoint_paths`` (a file, a model folder, a
run directory, a glob or a list), ``labels``/``stem`` (short names for reports and file names),
``network`` (the network on a device, refusing another class count) and ``inference_options``
(scales and flip defaulting to what the checkpoint validated with).
"""

import glob
import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from seg.checkpoint.read import is_model_folder, load_network
from seg.errors import CheckpointError

log = logging.getLogger("seg")


def checkpoint_paths(ckpt_path) -> list[Path]:
    """A file, a model folder, a directory (every .ckpt below it), a glob, or a list -> paths."""
    items = list(ckpt_path) if isinstance(ckpt_path, list | tuple | ListConfig) else [ckpt_path]
    paths = []
    for item in map(str, items):
        if Path(item).is_dir() and not is_model_folder(item):
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
    if options["flip"] is None:
        options["flip"] = bool(info.get("eval_flip", False))
    return options

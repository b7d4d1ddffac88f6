"""Segment unlabelled images with one model: ``python predict.py ckpt_path=... input=...``.

``ckpt_path`` is a checkpoint (PyTorch) or a model exported by export.py (``runtime=onnx``, or
``auto`` for a ``.onnx`` file: onnxruntime, and torch is never imported). Images larger than
``tiling.above`` pixels and GeoTIFFs are segmented tile by tile in bounded memory into a
single-band TIFF that keeps the GeoTIFF's CRS, transform and nodata (seg/deploy/tiles.py).

``predict(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the
thin Hydra entry point. See configs/predict.yaml for the options. Imports of torch and of the
packages that import it stay inside the functions of the PyTorch path.
"""

import os
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from seg.cli import expected_errors, run
from seg.errors import ChannelError, ConfigError, DatasetError
from seg.formats import IMAGE_TYPES

# configs/paths/default.yaml resolves relative paths against the repository folder.
os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

RUNTIMES = ("auto", "torch", "onnx")


def image_files(source: Path) -> list[Path]:
    """An image file, or the images of a folder."""
    files = (
        sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_TYPES)
        if source.is_dir()
        else [source]
    )
    if not files or not files[0].is_file():
        raise ConfigError(
            f"input={source} is neither an image nor a folder holding images "
            f"({' '.join(IMAGE_TYPES)}); give the path of one"
        )
    return files


class TorchModel:
    """A checkpoint's network with predict.py's inference options, on numpy pixels."""

    def __init__(self, cfg: DictConfig, path: Path) -> None:
        import torch

        from seg.checkpoint.select import inference_options, network, pick_device
        from seg.data.voc import VOC_CLASSES, voc_colormap

        self.torch, self.path = torch, path
        self.model, info = network(path, pick_device(cfg.device))
        self.mean, self.std, self.bands = info["mean"], info["std"], len(info["mean"])
        self.palette = info.get("palette") or voc_colormap()
        self.class_names = info.get("class_names") or VOC_CLASSES[: info["num_classes"]]
        self.options = inference_options(cfg, info)

    def read(self, file: Path) -> np.ndarray:
        from seg.data.reading import read_image

        try:
            return read_image(file, self.bands)
        except ChannelError:
            raise ChannelError(
                f"image {file} does not have the {self.bands} bands the checkpoint "
                f"{self.path.name} reads; give images with {self.bands} bands, or a checkpoint "
                f"trained on images like this one"
            ) from None

    def logits(self, pixels: np.ndarray):
        """``(H, W, C)`` on 0..255 -> logits ``(K, H, W)``, normalised as seg.inference."""
        from seg.inference import infer

        torch = self.torch
        x = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255)
        x = (x - torch.tensor(self.mean)) / torch.tensor(self.std)
        x = x.permute(2, 0, 1).unsqueeze(0).contiguous().to(next(self.model.parameters()).device)
        with torch.inference_mode():
            return infer(self.model, x, **self.options)[0]

    def classes(self, pixels: np.ndarray, name: str = "image") -> np.ndarray:
        return self.logits(pixels).argmax(dim=0).cpu().numpy().astype(np.uint8)

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        return self.logits(pixels).float().cpu().numpy()


class OnnxModel:
    """A model exported by export.py, run with onnxruntime: no torch."""

    def __init__(self, cfg: DictConfig, path: Path) -> None:
        from seg.deploy.runtime import DeployedModel

        self.deployed = DeployedModel(path, cfg.threads)
        self.path, self.bands = path, self.deployed.bands
        self.palette, self.class_names = self.deployed.palette, self.deployed.class_names

    def read(self, file: Path) -> np.ndarray:
        from seg.deploy.runtime import read_pixels

        return read_pixels(file)

    def classes(self, pixels: np.ndarray, name: str = "image") -> np.ndarray:
        return self.deployed.classes(pixels, name)

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        return self.deployed.probabilities(pixels)


def save(folder: Path, file: Path, pixels: np.ndarray, pred: np.ndarray, model) -> None:
    """The class-index PNG and the overlay with its legend (numpy and PIL: no torch)."""
    from seg.deploy.runtime import rgb_view
    from seg.report.images import save_mask, save_overlay

    save_mask(folder / f"{file.stem}.png", pred, model.palette)
    path = folder / f"{file.stem}_overlay.jpg"
    save_overlay(path, rgb_view(pixels), pred, model.class_names, model.palette)


def load_model(cfg: DictConfig):
    """The model ``ckpt_path`` names, in the runtime ``runtime`` picks."""
    if cfg.runtime not in RUNTIMES:
        raise ConfigError(f"runtime={cfg.runtime} is unknown; use one of {', '.join(RUNTIMES)}")
    onnx = cfg.runtime == "onnx" or (cfg.runtime == "auto" and str(cfg.ckpt_path).endswith(".onnx"))
    if onnx:
        return OnnxModel(cfg, Path(cfg.ckpt_path))
    from seg.checkpoint.select import checkpoint_paths

    paths = checkpoint_paths(cfg.ckpt_path)
    if len(paths) != 1:
        raise ConfigError(f"predict.py needs one checkpoint, but ckpt_path matched {len(paths)}")
    return TorchModel(cfg, paths[0])


def tiled(cfg: DictConfig, file: Path) -> bool:
    """Whether ``file`` goes tile by tile: a GeoTIFF, or more pixels than tiling.above."""
    from seg.deploy.tiles import image_size

    height, width, georeferenced = image_size(file)
    return georeferenced or height * width > cfg.tiling.above


def predict_one(cfg: DictConfig, model, file: Path, folder: Path) -> str:
    """Segment one image; returns the path of the class map written."""
    if tiled(cfg, file):
        from seg.deploy.tiles import predict_tiled

        target = folder / f"{file.stem}.tif"
        t = cfg.tiling
        predict_tiled(file, target, model.scores, model.bands, model.palette, t.tile, t.overlap)
        return str(target)
    pixels = model.read(file)
    pred = model.classes(pixels, str(file))
    save(folder, file, pixels, pred, model)
    return str(folder / f"{file.stem}.png")


def predict(cfg: DictConfig) -> dict:
    """A coloured mask (palette PNG) and an overlay per image; a class-map TIFF for large ones."""
    files = image_files(Path(cfg.input))
    model = load_model(cfg)
    folder = Path(cfg.paths.output_dir) / "predict"
    done, skipped = [], {}
    for file in tqdm(files, desc="predict", unit="image"):
        try:
            done.append(predict_one(cfg, model, file, folder))
        except ChannelError:
            raise
        except DatasetError as error:  # one unreadable image: skip it, name it at the end
            if len(files) == 1:
                raise
            skipped[str(file)] = str(error)
    print(f"{len(done)} masks and overlays written to {folder}")
    for file, error in skipped.items():
        print(f"skipped {file}: {error}", file=sys.stderr)
    if not done:
        first = next(iter(skipped.values()))
        raise DatasetError(f"no image in {cfg.input} could be read; the first: {first}")
    return {"predictions": done, "skipped": skipped, "output_dir": str(cfg.paths.output_dir)}


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
@expected_errors
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    predict(cfg)


if __name__ == "__main__":
    run(main)

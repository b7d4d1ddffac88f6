"""Segment unlabelled images with one checkpoint: ``python predict.py ckpt_path=... input=...``.

``predict(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the
thin Hydra entry point. See configs/predict.yaml for the options.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from seg import report  # noqa: E402
from seg.checkpoint.select import checkpoint_paths, inference_options, network, pick_device  # noqa: E402
from seg.cli import expected_errors, run  # noqa: E402
from seg.config import ConfigError  # noqa: E402
from seg.data import ChannelError, DatasetError  # noqa: E402
from seg.data.voc import VOC_CLASSES, voc_colormap  # noqa: E402
from seg.data.reading import read_normalised  # noqa: E402
from seg.inference import infer  # noqa: E402
from seg.visualize import denormalise  # noqa: E402

IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


def predict(cfg: DictConfig) -> dict:
    """A coloured mask (palette PNG) and an overlay with a legend per image, one checkpoint."""
    paths = checkpoint_paths(cfg.ckpt_path)
    if len(paths) != 1:
        raise ConfigError(f"predict.py needs one checkpoint, but ckpt_path matched {len(paths)}")
    files = image_files(Path(cfg.input))
    model, info = network(paths[0], pick_device(cfg.device))
    mean, std = info["mean"], info["std"]
    palette = info.get("palette") or voc_colormap()
    names = info.get("class_names") or VOC_CLASSES[: info["num_classes"]]
    options, folder = inference_options(cfg, info), Path(cfg.paths.output_dir) / "predict"
    done, skipped = [], {}
    with torch.inference_mode():
        for file in tqdm(files, desc="predict", unit="image"):
            try:
                images = read_normalised(file, mean, std).to(next(model.parameters()).device)
            except ChannelError:
                raise ChannelError(
                    f"image {file} does not have the {len(mean)} bands the checkpoint "
                    f"{paths[0].name} reads; give images with {len(mean)} bands, or a checkpoint "
                    f"trained on images like this one"
                ) from None
            except DatasetError as error:  # one unreadable image: skip it, name it at the end
                if len(files) == 1:
                    raise
                skipped[str(file)] = str(error)
                continue
            pred = infer(model, images, **options).argmax(dim=1)[0].cpu().numpy()  # (H, W)
            report.save_mask(folder / f"{file.stem}.png", pred, palette)
            rgb = denormalise(images[0], mean, std)
            report.save_overlay(folder / f"{file.stem}_overlay.jpg", rgb, pred, names, palette)
            done.append(str(folder / f"{file.stem}.png"))
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

"""Shared fixtures: a generated VOC tree, the real data in ../shared/data, composed configs."""

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from seg.data.voc import voc_colormap

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEG_ROOT", str(REPO))
SHIPPED_VOC = REPO / "data" / "VOCdevkit" / "VOC2012"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config) -> None:
    """Under pytest-xdist (``-n``) each worker, and every program it starts, computes on one
    core: workers with torch's default of one thread per core would fight over the same cores,
    and a resumed run matches its subprocess bit for bit only with the same thread count."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def shared_data(name: str) -> Path:
    """Path to a dataset in ../shared/data; skip without it, but fail under CI=true."""
    path = SHARED_DATA / name
    if not path.is_dir():
        message = f"real data {path} is absent (it sits beside the repository on dev machines)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; under CI=true it must be there")
        pytest.skip(message)
    return path


def under_ci() -> bool:
    """True under CI=true, where a test that cannot run must fail rather than skip."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(message: str) -> None:
    """Skip with message on a dev machine; fail with it under CI=true."""
    if under_ci():
        pytest.fail(f"{message}; under CI=true it must be there")
    pytest.skip(message)


def require(module: str, install: str) -> ModuleType:
    """Import an optional package; skip without it (naming `install`), but fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        skip_or_fail(f"{module} is not importable ({error}); install it with `{install}`")


def voc_palette() -> list[int]:
    """The standard VOC colour map as a flat 768-long PIL palette."""
    return [c for rgb in voc_colormap() for c in rgb]


def write_voc_tree(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (48, 64),
    num_classes: int = 21,
    seed: int = 0,
) -> Path:
    """Write a small VOC-layout tree: JPEGs, palette masks with 255 borders, split files.

    Each mask holds a background, one rectangle of a random foreground class and a 2-pixel
    255 border around the rectangle, as VOC annotations do. Image ids are unique across splits.
    """
    splits = splits or {"train": 6, "val": 3}
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    palette = voc_palette()
    for split, count in splits.items():
        ids = [f"{split}_{i:04d}" for i in range(count)]
        for image_id in ids:
            mask = np.zeros((h, w), np.uint8)
            y0, x0 = rng.integers(2, h // 2), rng.integers(2, w // 2)
            y1, x1 = y0 + h // 3, x0 + w // 3
            mask[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = 255
            mask[y0:y1, x0:x1] = rng.integers(1, num_classes)
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            image[mask > 0] //= 2  # objects are darker: there is something to learn
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
            png = Image.fromarray(mask, mode="P")
            png.putpalette(palette)
            png.save(root / "SegmentationClass" / f"{image_id}.png")
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """A generated VOC tree with 6 train and 3 val images of 48x64."""
    return write_voc_tree(tmp_path / "VOC2012")


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose configs/<config_name>.yaml as the command line would, writing under output_dir."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=[*overrides, f"paths.output_dir={output_dir}"])
    return cfg


# A few-second CPU training run: tiny backbone, no ImageNet weights, no worker processes.
FAST_TRAIN = ["debug=fast"]  # configs/debug/fast.yaml: two epochs of the tiny backbone


def write_band_tree(root: Path, bands: int = 4, **tree) -> Path:
    """write_voc_tree with ``bands``-band PNG images (RGB plus alpha as a fourth band).

    The extra band repeats the mask's objects (brighter inside them), so it carries signal.
    """
    write_voc_tree(root, **tree)
    for jpeg in sorted((root / "JPEGImages").glob("*.jpg")):
        rgb = np.array(Image.open(jpeg))
        mask = np.array(Image.open(root / "SegmentationClass" / f"{jpeg.stem}.png"))
        extra = np.where((mask > 0) & (mask < 255), 250, 130).astype(np.uint8)
        pixels = np.dstack([rgb, *[extra] * (bands - 3)])
        Image.fromarray(pixels, "RGBA" if bands == 4 else None).save(jpeg.with_suffix(".png"))
        jpeg.unlink()
    return root


class OptionsRun(NamedTuple):
    """A trained run whose checkpoint carries non-default evaluation options."""

    root: Path
    run_dir: Path
    metrics: dict[str, float]
    data: list[str]  # the data overrides it trained with, for evaluate.py
    options: dict  # the options it carries: eval_scale, eval_flip, names, palette, mean, std


OPTIONS = {
    "eval_scale": 0.5,
    "eval_flip": True,
    "class_names": ["ground", "rock", "tree"],
    "palette": [[10, 20, 30], [200, 100, 50], [0, 250, 0]],
    "mean": [0.3, 0.35, 0.4, 0.5],
    "std": [0.2, 0.25, 0.3, 0.35],
    "in_channels": 4,
}


@pytest.fixture(scope="session")
def options_run(tmp_path_factory) -> OptionsRun:
    """Two epochs of a tiny U-Net on 4-band images with every evaluation option non-default.

    One run shared by the tests of what a checkpoint carries into evaluate.py and predict.py
    (about 2 s): eval_scale 0.5, eval_flip, three named classes with their own colours, own
    mean/std, in_channels 4.
    """
    tmp = tmp_path_factory.mktemp("options")
    root = write_band_tree(tmp / "VOC2012", splits={"train": 4, "val": 2}, num_classes=3)

    def listed(values) -> str:
        return "[" + ",".join(map(str, values)) + "]"

    palette = "[" + ",".join(listed(c) for c in OPTIONS["palette"]) + "]"
    data = [
        f"data.root={root}",
        "data.image_ext=.png",
        "data.num_workers=0",
        "data.persistent_workers=false",
        f"data.class_names={listed(OPTIONS['class_names'])}",
        f"data.palette={palette}",
        f"data.in_channels={OPTIONS['in_channels']}",
        f"data.mean={listed(OPTIONS['mean'])}",
        f"data.std={listed(OPTIONS['std'])}",
    ]
    model = ["model=unet", "model.eval_scale=0.5", "model.eval_flip=true"]
    train_only = ["data.crop_size=32", "data.batch_size=2"]
    cfg = compose("train", [*FAST_TRAIN, *model, *data, *train_only], tmp / "run")
    from train import train

    metrics = train(cfg)
    return OptionsRun(root, Path(cfg.paths.output_dir), metrics, data, OPTIONS)

"""Image and mask stay aligned through every augmentation and inference path.

Each sample is a grid of 8-pixel blocks of random classes; the image is grey, one level per
class, so the mask can be read back from the image. After a transform, every label must own a
range of image values that no other label's range overlaps (colour jitter moves the levels but
keeps them apart). A flip, crop, scale or pad applied to one of the two and not the other mixes
the levels under one label. Near block edges bilinear resizing blends levels: where the image
was resized only pixels whose 3x3 neighbourhood holds one label are compared.

A data layout or mask encoding is one more entry in ``LAYOUTS``: a function writing the samples
in its format and returning the datamodule's options.
"""

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import voc_palette
from PIL import Image

from seg.data import SegmentationDataModule
from seg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from seg.inference import infer

LEVELS = np.array([30, 75, 175, 220], np.uint8)  # grey level of each class; pads: 0 and ~124
SIZES = [(48, 64), (40, 56), (56, 48), (48, 64), (64, 40), (48, 48)]
SEEDS = range(8)  # x 6 images: both branches of every random choice occur (asserted below)


def block_samples(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(grey image uint8 (H, W, 3), labels uint8 (H, W)) pairs of 8-pixel blocks."""
    rng = np.random.default_rng(seed)
    samples = []
    for h, w in SIZES:
        labels = rng.integers(0, len(LEVELS), (h // 8, w // 8)).astype(np.uint8)
        labels = labels.repeat(8, 0).repeat(8, 1)
        samples.append((np.repeat(LEVELS[labels][..., None], 3, axis=2), labels))
    return samples


Samples = dict[str, tuple[np.ndarray, np.ndarray]]  # id -> (image, labels)


def voc_palette_masks(root: Path, samples: Samples) -> dict:
    """VOC: JPEG images, palette PNG masks (class indices in the palette)."""
    for sub in ("JPEGImages", "SegmentationClass"):
        (root / sub).mkdir(parents=True)
    for name, (image, labels) in samples.items():
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        png = Image.fromarray(labels, mode="P")
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{name}.png")
    return {}


def grey_masks_png_images(root: Path, samples: Samples) -> dict:
    """PNG images and grey masks holding raw values, mapped to classes by label_map."""
    for sub in ("JPEGImages", "SegmentationClass"):
        (root / sub).mkdir(parents=True)
    for name, (image, labels) in samples.items():
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.png")
        Image.fromarray(labels * 10 + 5, mode="L").save(root / "SegmentationClass" / f"{name}.png")
    return {"image_ext": ".png", "label_map": {c * 10 + 5: c for c in range(len(LEVELS))}}


LAYOUTS: dict[str, Callable[[Path, Samples], dict]] = {
    "voc-palette": voc_palette_masks,
    "grey-masks": grey_masks_png_images,
}


def datamodule(layout: str, root: Path, **options) -> SegmentationDataModule:
    """The same samples as a train and a val split, written in ``layout``."""
    samples, splits = block_samples(), root / "ImageSets/Segmentation"
    ids = {split: [f"{split}_{i}" for i in range(len(samples))] for split in ("train", "val")}
    extra = LAYOUTS[layout](
        root, dict(zip(ids["train"] + ids["val"], samples + samples, strict=True))
    )
    splits.mkdir(parents=True)
    for split, names in ids.items():
        (splits / f"{split}.txt").write_text("\n".join(names) + "\n")
    names = [str(c) for c in range(len(LEVELS))]
    dm = SegmentationDataModule(str(root), class_names=names, num_workers=0, **extra, **options)
    dm.setup("fit")
    return dm


def interior(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Pixels whose (2 margin + 1)^2 neighbourhood holds a single label, off the border.

    (A border pixel's neighbours beyond a crop were blended into it before the crop.)
    """
    m = mask[None, None].float()
    k = 2 * margin + 1
    high = F.max_pool2d(m, k, 1, margin)
    low = -F.max_pool2d(-m, k, 1, margin)
    keep = (high == low)[0, 0]
    frame = torch.ones_like(keep)
    if margin:
        frame[margin:-margin, margin:-margin] = False
        keep &= ~frame
    return keep


def assert_aligned(image: torch.Tensor, mask: torch.Tensor, margin: int) -> None:
    """Each label's image values (channel 0) form a range overlapping no other label's."""
    keep = interior(mask, margin)
    values, labels = image[0][keep], mask[keep]
    ranges = sorted((float(values[labels == v].min()), float(values[labels == v].max()), int(v))
                    for v in labels.unique())  # fmt: skip
    assert len(ranges) >= 2, "fewer than two labels left: the check would prove nothing"
    for (_, high, a), (low, _, b) in pairwise(ranges):
        assert high < low, f"labels {a} and {b} share image values: image and mask are misaligned"


class Recording:
    """Wrap an albumentations Compose and keep the parameters of every call."""

    def __init__(self, compose) -> None:
        self.compose, self.calls = compose, []
        compose.save_applied_params = True

    def set_random_seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def __call__(self, **data) -> dict:
        out = self.compose(**data)
        self.calls.append(dict(out["applied_transforms"]))
        return out


def branches(call: dict) -> set[str]:
    """The side each random choice of one transform call took."""
    taken = {"flip" if "HorizontalFlip" in call else "no flip"}
    for name in ("RandomScale", "SmallestMaxSize"):
        if name in call:
            taken.add("upscale" if call[name]["scale"] > 1 else "downscale")
    pad = call["PadIfNeeded"]
    taken.add("padded" if pad["pad_bottom"] or pad["pad_right"] else "not padded")
    taken.add("cropped off-origin" if call["RandomCrop"]["crop_coords"][:2] != (0, 0) else "at 0")
    if "ColorJitter" in call:
        taken.add("brighter" if call["ColorJitter"]["brightness"] > 1 else "darker")
    return taken


TRAIN_OPTIONS = {
    "scale-pad-crop-flip-jitter": dict(crop_size=[56, 56], scale_range=[0.5, 2.0],
                                       color_jitter=0.2),
    "base-size": dict(crop_size=[40, 48], base_size=48, scale_range=[0.6, 1.5]),
    "no-resize": dict(crop_size=[48, 48], scale_range=[1.0, 1.0]),
}  # fmt: skip
EXPECTED_BRANCHES = {
    "scale-pad-crop-flip-jitter": {"flip", "no flip", "upscale", "downscale", "padded",
                                   "not padded", "cropped off-origin", "brighter", "darker"},
    "base-size": {"flip", "no flip", "upscale", "downscale", "padded", "not padded",
                  "cropped off-origin"},
    "no-resize": {"flip", "no flip", "padded", "not padded", "cropped off-origin"},
}  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("option", TRAIN_OPTIONS)
def test_training_augmentation_keeps_image_and_mask_aligned(layout, option, tmp_path):
    dm = datamodule(layout, tmp_path / "root", **TRAIN_OPTIONS[option])
    dataset = dm.datasets["train"]
    dataset.transform = recording = Recording(dataset.transform)
    resized = option != "no-resize"
    for seed in SEEDS:
        for index in range(len(dataset)):
            sample = dataset[(index, seed * 100 + index)]
            assert_aligned(sample["image"], sample["mask"], margin=1 if resized else 0)
    taken = set().union(*(branches(call) for call in recording.calls))
    assert EXPECTED_BRANCHES[option] <= taken, f"never taken: {EXPECTED_BRANCHES[option] - taken}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_evaluation_samples_and_padded_batches_stay_aligned(layout, tmp_path):
    dm = datamodule(layout, tmp_path / "root", val_batch_size=3)
    samples = [dm.datasets["val"][i] for i in range(len(SIZES))]
    for sample, (_, labels) in zip(samples, block_samples(), strict=True):
        assert np.array_equal(sample["mask"].numpy(), labels)  # native size, untouched
        assert_aligned(sample["image"], sample["mask"], margin=0)
    batches = list(dm.val_dataloader())
    assert [tuple(b["mask"].shape) for b in batches] == [(3, 56, 64), (3, 64, 64)]
    for batch in batches:
        for image, mask in zip(batch["image"], batch["mask"], strict=True):
            assert (mask == 255).any()  # padding is one more label with its own image value
            assert_aligned(image, mask, margin=0)


def level_classifier(images: torch.Tensor) -> torch.Tensor:
    """A pointwise 'network': logits (N, K, H, W) peaking at the class whose level is nearest."""
    levels = (torch.tensor(LEVELS / 255.0) - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    return -((images[:, :1] - levels.view(1, -1, 1, 1).float()) ** 2) * 100


INFERENCE = {  # name: (infer options, margin: resized views blend levels near block edges)
    "plain": (dict(), 0),
    "flip": (dict(flip=True), 0),
    "eval-scale-0.5": (dict(scales=(0.5,)), 1),
    "eval-scale-0.75": (dict(scales=(0.75,)), 1),
    "multi-scale-flip": (dict(scales=(0.5, 1.0, 1.5), flip=True), 1),
    "sliding-window": (dict(window=[24, 40], stride=[16, 16]), 0),
    "window-and-scales": (dict(window=24, scales=(0.75, 1.25), flip=True), 1),
}


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_predictions_land_on_their_pixels(name, tmp_path):
    options, margin = INFERENCE[name]
    dm = datamodule("voc-palette", tmp_path / "root")
    for i in range(len(SIZES)):
        sample = dm.datasets["val"][i]
        images, mask = sample["image"][None], sample["mask"]
        with torch.no_grad():
            preds = infer(level_classifier, images, **options).argmax(1)[0]
        keep = interior(mask, margin)
        assert keep.float().mean() > 0.3
        assert torch.equal(preds[keep], mask[keep]), f"{name}: predictions moved off their pixels"

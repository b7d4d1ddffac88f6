"""Pascal VOC data: class names, colour map, the errors, validated reading, the dataset.

Images are decoded with OpenCV; masks are palette or single-channel PNGs whose values are class
indices (255 = void), read with PIL so palettes are never turned into colours, or SBD's
``cls/<id>.mat`` files. Which files form a split is decided in seg/data/sbd.py.

Sample contract: ``image`` float32 ``(3, H, W)``, normalised; ``mask`` int64 ``(H, W)`` with values
``0..num_classes-1`` and ``ignore_index``; ``id`` the image id. Each sample is checked as it is
read (missing or truncated files, size mismatch, colour masks, labels out of range), and every
problem raises a ``DatasetError`` subclass whose message names the file and what to do.
"""

from pathlib import Path
from typing import NamedTuple

import albumentations as A
import cv2
import numpy as np
import scipy.io
from PIL import Image
from torch.utils.data import Dataset

from seg.data.transforms import eval_transform

# fmt: off
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
# fmt: on


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and what to do."""


class RootNotFoundError(DatasetError):
    """The dataset root folder does not exist."""


class SplitError(DatasetError):
    """A split file is missing or empty, or a split name is unknown."""


class SplitOverlapError(DatasetError):
    """Training and evaluation splits share ids."""


class MissingFileError(DatasetError):
    """An id's image or mask file is missing."""


class ImageReadError(DatasetError):
    """An image or mask cannot be decoded, or is truncated."""


class MaskSizeError(DatasetError):
    """A mask's size differs from its image's."""


class ColourMaskError(DatasetError):
    """A mask is an RGB colour image instead of class indices."""


class LabelRangeError(DatasetError):
    """A mask holds values outside 0..num_classes-1 and the ignore index after the label map."""


class Sample(NamedTuple):
    id: str
    image: Path
    mask: Path


def voc_colormap(n: int = 256) -> list[list[int]]:
    """The standard VOC colour map: RGB per class index (bits of the index spread over R, G, B)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append([r, g, b])
    return colours


def read_image(path: Path) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3), decoded by OpenCV; refuses truncated files."""
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise MissingFileError(f"image {path} is missing; add it or remove its id") from None
    tail = data[-1024:].tobytes()
    # JPEG ends with the EOI marker, PNG with IEND: a cut download lacks them
    cut = (data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in tail) or (
        data[:4].tobytes() == b"\x89PNG" and b"IEND" not in tail
    )
    image = None if cut or data.size == 0 else cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ImageReadError(
            f"image {path} is truncated or unreadable; replace it with a good copy"
        )
    return image


def read_mask(path: Path) -> np.ndarray:
    """Class indices as uint8 (H, W) from a palette/grey PNG or an SBD .mat (GTcls.Segmentation)."""
    try:
        if path.suffix == ".mat":
            return scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0].astype(np.uint8)
        with Image.open(path) as png:
            mode, mask = png.mode, np.asarray(png)
    except FileNotFoundError:
        raise MissingFileError(f"mask {path} is missing; add it or remove its id") from None
    except (OSError, SyntaxError, ValueError, KeyError, IndexError) as err:
        raise ImageReadError(
            f"mask {path} is truncated or unreadable ({err}); replace it"
        ) from None
    if mask.ndim != 2:
        raise ColourMaskError(
            f"mask {path} is a colour ({mode}) image; masks must hold class indices (palette or "
            "single-channel PNG). Convert colours to indices with the dataset's colour map"
        )
    if mask.dtype != np.uint8 and (mask.min() < 0 or mask.max() > 255):
        raise LabelRangeError(f"mask {path} holds values outside 0..255; store class indices")
    return mask.astype(np.uint8, copy=False)


def label_lut(num_classes: int, ignore_index: int = 255, label_map: dict | None = None):
    """Raw value -> train id for 0..255 as int16; -1 marks values that are neither.

    Unmapped values pass through; 255 (raw or mapped) means ignore.
    """
    if not 0 <= ignore_index <= 255 or ignore_index < num_classes:
        raise DatasetError(f"ignore_index={ignore_index} must lie in {num_classes}..255")
    lut = np.arange(256, dtype=np.int16)
    for raw, train_id in (label_map or {}).items():
        if not (0 <= int(raw) <= 255 and (0 <= int(train_id) < num_classes or train_id == 255)):
            raise DatasetError(
                f"label_map entry {raw}: {train_id} is invalid; map raw values 0..255 to "
                f"0..{num_classes - 1} or 255 (ignore)"
            )
        lut[int(raw)] = int(train_id)
    lut[lut == 255] = ignore_index
    lut[(lut >= num_classes) & (lut != ignore_index)] = -1
    return lut


def check_files(samples: list[Sample]) -> None:
    """Refuse a split whose images or masks are missing, naming the first few (before training)."""
    missing = [str(p) for s in samples for p in (s.image, s.mask) if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{len(missing)} image/mask files of the split are missing (first: "
            f"{', '.join(missing[:3])}); add them or remove their ids from the split file"
        )


def check_size(sample: Sample, image: np.ndarray, mask: np.ndarray) -> None:
    """Refuse a mask whose size differs from its image's."""
    if mask.shape != image.shape[:2]:
        raise MaskSizeError(
            f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but image {sample.image} "
            f"is {image.shape[1]}x{image.shape[0]}; a mask must match its image pixel for pixel"
        )


class VOCSegmentationDataset(Dataset):
    """Validated (image, mask) samples with a paired albumentations transform."""

    def __init__(
        self,
        samples: list[Sample],
        num_classes: int = 21,
        ignore_index: int = 255,
        label_map: dict[int, int] | None = None,
        transform: A.Compose | None = None,
    ) -> None:
        self.samples = list(samples)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.lut = label_lut(num_classes, ignore_index, label_map)
        self.transform = transform or eval_transform()

    def __len__(self) -> int:
        return len(self.samples)

    def load_mask(self, index: int) -> np.ndarray:
        """The mask of sample index as train ids, uint8 (H, W)."""
        path = self.samples[index].mask
        raw = read_mask(path)
        mask = self.lut[raw]  # (H, W) int16, -1 where a value is out of range
        if mask.min() < 0:
            bad = np.unique(raw[mask < 0]).tolist()
            raise LabelRangeError(
                f"mask {path} holds values {bad[:10]} outside 0..{self.num_classes - 1} and "
                f"{self.ignore_index}; fix the mask or map them with data.label_map"
            )
        return mask.astype(np.uint8)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image uint8 (H, W, 3) and mask uint8 (H, W) of sample index, before any transform."""
        image, mask = read_image(self.samples[index].image), self.load_mask(index)
        check_size(self.samples[index], image, mask)
        return image, mask

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Sample ``index``, or ``(index, seed)`` from SeededSampler: the augmentation's seed."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
        image, mask = self.load(index)
        out = self.transform(image=image, mask=mask)
        return {"image": out["image"], "mask": out["mask"].long(), "id": self.samples[index].id}

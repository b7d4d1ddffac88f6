"""SegmentationDataset: validated (image, mask) samples through a paired transform.

Sample contract: ``image`` float32 ``(C, H, W)``, normalised (C = ``in_channels``, 3 for RGB);
``mask`` int64 ``(H, W)`` with values ``0..num_classes-1`` and ``ignore_index``; ``id`` the image
id. Each sample is checked as it is read (missing or truncated files, channels, size mismatch,
encodings, labels out of range), and every problem raises a ``DatasetError`` subclass whose
message names the file and what to do. A training dataset (``skip_unreadable``) instead gives
the next readable sample, with the unreadable one's message in ``skipped`` (empty otherwise),
so that one file that breaks in the middle of a long run does not end it: ``SkippedSamples``
counts them and stops past ``data.max_bad_samples``.
"""

import logging

import albumentations as A
import numpy as np
from torch.utils.data import Dataset

from seg.data.encodings import MaskDecoder
from seg.data.layouts import Sample
from seg.data.reading import read_image, read_mask
from seg.data.transforms import eval_transform
from seg.errors import DatasetError, MaskSizeError

log = logging.getLogger("seg")


def check_size(sample: Sample, image: np.ndarray, mask: np.ndarray) -> None:
    """Refuse a mask whose size differs from its image's."""
    if mask.shape[:2] != image.shape[:2]:
        raise MaskSizeError(
            f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but image {sample.image} "
            f"is {image.shape[1]}x{image.shape[0]}; a mask must match its image pixel for pixel"
        )


class SegmentationDataset(Dataset):
    """Validated (image, mask) samples with a paired albumentations transform."""

    def __init__(
        self,
        samples: list[Sample],
        num_classes: int = 21,
        ignore_index: int = 255,
        label_map: dict[int, int] | None = None,
        transform: A.Compose | None = None,
        decoder: MaskDecoder | None = None,
        in_channels: int = 3,
        skip_unreadable: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.skip_unreadable = skip_unreadable
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.decoder = decoder or MaskDecoder(num_classes, ignore_index, label_map=label_map)
        self.transform = transform or eval_transform()
        self.in_channels = in_channels

    def __len__(self) -> int:
        return len(self.samples)

    def load_mask(self, index: int) -> np.ndarray:
        """The mask of sample index as train ids, uint8 (H, W)."""
        path = self.samples[index].mask
        return self.decoder(read_mask(path), path)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, C) and mask uint8 (H, W) of sample index, before any transform."""
        image = read_image(self.samples[index].image, self.in_channels)
        mask = self.load_mask(index)
        check_size(self.samples[index], image, mask)
        return image, mask

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Sample ``index``, or ``(index, seed)`` from SeededSampler: the augmentation's seed."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
        skipped = ""
        for tries in range(len(self.samples)):
            try:
                image, mask = self.load(index)
                break
            except DatasetError as error:
                if not self.skip_unreadable or tries == len(self.samples) - 1:
                    raise
                skipped = skipped or str(error)
                log.warning("skipping an unreadable training sample: %s", error)
                index = (index + 1) % len(self.samples)
        out = self.transform(image=image, mask=mask)
        sample = {"image": out["image"], "mask": out["mask"].long(), "id": self.samples[index].id}
        return sample | ({"skipped": skipped} if self.skip_unreadable else {})

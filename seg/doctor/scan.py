"""Scanning a dataset for the doctor: per-sample statistics and problems, then their sum.

Each sample is read with the training readers (reading.py), so the doctor sees the same EXIF
orientation, truncation and channel rules. Masks are summarised as their raw values (or colours)
with pixel counts; decoding those summaries with the training decoder gives the doctor the same
error messages and the class pixel counts without reading anything twice.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg.data.dataset import check_size
from seg.data.encodings import MaskDecoder, colour_keys
from seg.data.layouts import Sample
from seg.data.reading import read_image, read_mask
from seg.errors import DatasetError


@dataclass
class SampleScan:
    """What one sample holds: image size and bands, per-band sums, raw mask values and counts."""

    sample: Sample
    size: tuple[int, int] | None = None  # (width, height)
    channels: int | None = None
    sums: np.ndarray | None = None  # (C,) sum of 0..1 values, then of squares
    squares: np.ndarray | None = None
    colour: bool = False  # mask values are RGB colours (n, 3), else indices (n,)
    values: np.ndarray | None = None
    counts: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)


def summarise_mask(scan: SampleScan, raw: np.ndarray) -> None:
    """Raw mask -> its distinct values (or colours) with pixel counts."""
    if raw.ndim == 3 and not (raw[..., :3] == raw[..., :1]).all():
        keys, counts = np.unique(colour_keys(raw[..., :3]), return_counts=True)
        scan.colour, scan.counts = True, counts
        scan.values = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1)
    else:
        scan.values, scan.counts = np.unique(
            raw[..., 0] if raw.ndim == 3 else raw, return_counts=True
        )


def scan_sample(sample: Sample) -> SampleScan:
    """Read one sample with the training readers; every problem is recorded, none raised."""
    scan, image, raw = SampleScan(sample), None, None
    try:
        image = read_image(sample.image, None)  # (H, W, C) on 0..255
        scan.size, scan.channels = (image.shape[1], image.shape[0]), image.shape[2]
        pixels = image.reshape(-1, image.shape[2]).astype(np.float64) / 255
        scan.sums, scan.squares = pixels.sum(0), (pixels**2).sum(0)
    except DatasetError as err:
        scan.problems.append(str(err))
    try:
        raw = read_mask(sample.mask)
        if image is not None:
            check_size(sample, image, raw)
        summarise_mask(scan, raw)
    except DatasetError as err:
        scan.problems.append(str(err))
    return scan


def decode_counts(scan: SampleScan, decoder: MaskDecoder, counts: np.ndarray) -> None:
    """Add the sample's pixels per train id to counts (256,); a refusal becomes a problem."""
    if scan.values is None:
        return
    raw = scan.values[None]  # (1, n) or (1, n, 3): a one-row "mask" of the distinct values
    try:
        ids = decoder(raw.astype(np.uint8 if scan.colour else scan.values.dtype), scan.sample.mask)
        np.add.at(counts, ids[0].astype(np.int64), scan.counts)
    except DatasetError as err:
        scan.problems.append(str(err))


@dataclass
class Totals:
    """The sum of the scans: what the report and the written config are made of."""

    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    channels: Counter = field(default_factory=Counter)  # bands -> images
    colour_masks: int = 0
    index_masks: int = 0
    values: Counter = field(default_factory=Counter)  # raw index value -> pixels
    colours: Counter = field(default_factory=Counter)  # (r, g, b) -> pixels
    mask_names: list[Path] = field(default_factory=list)
    sums: dict[int, np.ndarray] = field(default_factory=dict)  # bands -> (sum, squares, pixels)

    def add(self, scan: SampleScan) -> None:
        if scan.size is not None:
            self.sizes[scan.size] += 1
            self.channels[scan.channels] += 1
            zero = np.zeros((2, scan.channels)), 0
            (acc, n) = self.sums.get(scan.channels, zero)
            self.sums[scan.channels] = (
                acc + np.stack([scan.sums, scan.squares]),
                n + scan.size[0] * scan.size[1],
            )
        if scan.values is not None:
            self.mask_names.append(scan.sample.mask)
            if scan.colour:
                self.colour_masks += 1
                self.colours.update(
                    {
                        tuple(v): int(c)
                        for v, c in zip(scan.values.tolist(), scan.counts, strict=True)
                    }
                )
            else:
                self.index_masks += 1
                self.values.update(
                    {int(v): int(c) for v, c in zip(scan.values, scan.counts, strict=True)}
                )

    def mean_std(self, bands: int) -> tuple[list[float], list[float]]:
        """Per-band mean and standard deviation of the images with that many bands, on 0..1."""
        (sums, squares), n = self.sums[bands][0], max(self.sums[bands][1], 1)
        mean = sums / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 1e-12))
        return [round(float(m), 4) for m in mean], [
            max(round(float(s), 4), 1e-3) for s in std
        ]  # flat images: no 0

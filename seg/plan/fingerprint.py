"""A dataset's fingerprint: the doctor's scan plus what the rules need and the scan leaves out.

From the doctor's report (seg/doctor/diagnosis.py): images per split, image sizes, bands and
per-band mean/std, the mask encoding, class names and class pixel shares. Added here, from a
sample of at most ``SAMPLE`` training masks and images: the bit depth, and per class the size
and thickness of its objects. Thickness is the diameter of the largest disc inside a connected
component (2 x the peak of its distance transform, minus 1): 3 px for a pole 3 pixels wide,
whatever its length. Each class reports the pixel-weighted median over its components, so that
specks of noise do not make a large class look thin. Groups in file names come from groups.py.
"""

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from seg.data.encodings import MaskDecoder
from seg.data.layouts import Sample
from seg.data.reading import decode, read_bytes, read_mask
from seg.doctor.diagnosis import Report, samples_of
from seg.plan.groups import groups_found

SAMPLE = 24  # masks read for object sizes: evenly spaced over the training split
TRAIN_NAMES, VAL_NAMES = ("train", "training", "all"), ("val", "validation")


@dataclass
class Fingerprint:
    """What the rules read; plain values, so that a fingerprint can be saved and compared."""

    root: str
    splits: dict[str, int]  # split -> images
    train_ids: list[str]
    val_ids: list[str]  # empty: the tree has no validation split; the plan makes one
    size: tuple[int, int]  # median (height, width)
    largest: tuple[int, int]  # (height, width) of the largest image
    bands: int
    bit_depth: int
    mean: list[float]
    std: list[float]
    encoding: str
    raw_values: list[int]  # raw index mask values (empty for colour masks)
    class_names: list[str]
    shares: list[float]  # pixel share per class over every scanned mask, ignore excluded
    thickness: list[float | None]  # px, pixel-weighted median per class (None: not in sample)
    area: list[float | None]  # px, pixel-weighted median connected-component area per class
    presence: list[int]  # sampled training masks holding each class
    sampled: int  # training masks sampled for thickness, area and presence
    groups: dict[str, int] = field(default_factory=dict)  # group -> training images

    def as_dict(self) -> dict:
        return asdict(self)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half the weight lies."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def components(mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(thickness, area) of each connected component of class k in one mask."""
    binary = (mask == k).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2:
        return np.zeros(0), np.zeros(0)
    # padded with 0: an object ends at the image border
    dist = cv2.distanceTransform(np.pad(binary, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    inside = binary > 0
    peak = np.zeros(count, np.float64)
    np.maximum.at(peak, labels[inside], dist[inside])
    thickness = np.maximum(2 * peak[1:] - 1, 1.0)
    return thickness, stats[1:, cv2.CC_STAT_AREA].astype(np.float64)


def object_sizes(masks: list[np.ndarray], num_classes: int) -> tuple[list, list]:
    """Per class: pixel-weighted median thickness and component area (None when absent)."""
    thickness, area = [], []
    for k in range(num_classes):
        parts = [components(mask, k) for mask in masks]
        t = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        a = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
        thickness.append(round(weighted_median(t, a), 1) if a.size else None)
        area.append(round(weighted_median(a, a), 1) if a.size else None)
    return thickness, area


def bit_depth(samples: list[Sample]) -> int:
    """16 when any sampled image is stored in 16 bits (or floats), else 8."""
    for sample in samples:
        image = decode(sample.image, read_bytes(sample.image, "image"))
        if image is not None and image.dtype != np.uint8:
            return 16
    return 8


def evenly(items: list, count: int = SAMPLE) -> list:
    """At most ``count`` items, evenly spaced: deterministic and spread over the sequence."""
    if len(items) <= count:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def split_ids(report: Report, image_ext: str, sbd_root) -> tuple[list[Sample], list[str]]:
    """(training samples, validation ids) of the scanned tree; no val split: empty ids."""
    names = list(report.splits)
    train = next((n for n in TRAIN_NAMES if n in names), names[0] if names else None)
    val = next((n for n in VAL_NAMES if n in names), None)
    read = lambda name: samples_of(report.root, name, report.layout, image_ext, sbd_root)  # noqa: E731
    samples = read(train) if train else []
    return samples, [s.id for s in read(val)] if val else []


def fingerprint(report: Report, decoder: MaskDecoder, image_ext=".jpg", sbd_root=None):
    """The fingerprint of a tree the doctor scanned without problems."""
    totals = report.totals
    train, val_ids = split_ids(report, image_ext, sbd_root)
    sampled = evenly(train)
    masks = [decoder(read_mask(s.mask), s.mask) for s in sampled]
    thickness, area = object_sizes(masks, len(report.class_names))
    heights = sorted(h for (w, h), n in report.sizes.items() for _ in range(n))
    widths = sorted(w for (w, h), n in report.sizes.items() for _ in range(n))
    bands = totals.channels.most_common(1)[0][0]
    mean, std = totals.mean_std(bands)
    pixels = report.pixels[: len(report.class_names)].astype(np.float64)
    ids = [s.id for s in train]
    presence = [int(sum((m == k).any() for m in masks)) for k in range(len(report.class_names))]
    return Fingerprint(
        root=str(report.root.resolve()), splits=dict(report.splits), train_ids=ids,
        val_ids=val_ids, size=(heights[len(heights) // 2], widths[len(widths) // 2]),
        largest=max(((h, w) for w, h in report.sizes), key=lambda s: s[0] * s[1]),
        bands=bands, bit_depth=bit_depth(sampled[:4]), mean=mean, std=std,
        encoding=report.encoding, raw_values=sorted(totals.values) if not totals.colours else [],
        class_names=list(report.class_names),
        shares=[round(float(p / max(pixels.sum(), 1)), 6) for p in pixels],
        thickness=thickness, area=area, presence=presence, sampled=len(masks),
        groups=dict(sorted((groups_found(ids) or {}).items())),
    )  # fmt: skip

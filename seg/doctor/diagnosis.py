"""The doctor's diagnosis: read every split, scan every sample, settle encoding and classes.

Everything is read with the training code (layouts, readers, decoder), so the doctor reports
exactly what training would refuse, all at once instead of at the first bad file.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg.data.check import check_unique
from seg.data.encodings import MaskDecoder
from seg.data.layouts import (
    MASK_TYPES,
    SPLIT,
    Sample,
    folder_samples,
    index_files,
    pair,
)
from seg.data.sbd import SPLIT_DIR, check_disjoint, split_samples
from seg.data.voc import VOC_CLASSES
from seg.doctor.detect import detect_encoding, detect_layout
from seg.doctor.scan import Totals, decode_counts, scan_sample
from seg.errors import AmbiguousDataError, DatasetError
from seg.formats import IMAGE_TYPES


@dataclass
class Report:
    """What a scan found: counts for the table, the detected keys and one message per problem."""

    root: Path
    class_names: list[str]
    splits: dict[str, int] = field(default_factory=dict)  # split -> number of ids
    sizes: dict = field(default_factory=dict)  # (width, height) -> images
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # per train id
    problems: list[str] = field(default_factory=list)
    layout: dict = field(default_factory=dict)  # layout, folder keys, split names
    encoding: str | None = None
    palette: list[list[int]] | None = None
    totals: Totals = field(default_factory=Totals)


def split_names(root: Path, layout: dict, split: str | None) -> list[str]:
    """The splits to scan: the one asked for, the tree's split files or folders, else 'all'."""
    if split:
        return [split]
    if layout["layout"] == "voc":
        return sorted(p.stem for p in (root / SPLIT_DIR).glob("*.txt"))
    return layout["splits"] or ["all"]


def samples_of(root: Path, name: str, layout: dict, image_ext: str, sbd_root) -> list[Sample]:
    """The samples of one split of either layout ('all': every pair of a folder layout)."""
    if layout["layout"] == "voc":
        return split_samples(root, name, image_ext, sbd_root)
    keys = {k: layout[k] for k in ("image_dir", "mask_dir", "image_pattern", "mask_pattern")}
    if name == "all":
        images, masks = root / keys["image_dir"], root / keys["mask_dir"]
        return pair(images, masks, keys["image_pattern"], keys["mask_pattern"])
    return folder_samples(root, name, **keys)


def unpaired(root: Path, layout: dict, image_ext: str, listed: set[str]) -> list[str]:
    """Masks without an image, as a problem (images without a mask are the layout's to refuse).

    Ids of a split are left out: a listed id's missing image is reported with its split.
    """
    if layout["layout"] == "voc":
        images, masks = root / "JPEGImages", root / "SegmentationClass"
        found = {p.stem for p in images.glob(f"*{image_ext}")} if images.is_dir() else set()
        mask_ids = {p.stem: p for p in masks.glob("*.png")} if masks.is_dir() else {}
    elif SPLIT in layout["image_dir"] + layout["mask_dir"]:
        return []  # paired split by split by the layout itself
    else:
        found = index_files(root / layout["image_dir"], layout["image_pattern"], IMAGE_TYPES)
        mask_ids = index_files(root / layout["mask_dir"], layout["mask_pattern"], MASK_TYPES)
    lonely = sorted(str(mask_ids[i]) for i in mask_ids.keys() - set(found) - listed)
    if not lonely:
        return []
    return [
        f"{len(lonely)} masks have no image (first: {', '.join(lonely[:3])}); add their images "
        f"or remove the masks"
    ]


def read_splits(report: Report, split, image_ext, sbd_root) -> dict[str, list[Sample]]:
    """Every split's samples; each failure (missing, empty, repeated ids, overlap) a problem."""
    root, splits = report.root, {}
    names = split_names(root, report.layout, split)
    if not names:
        report.problems.append(f"no split files in {root / SPLIT_DIR}; add <split>.txt id lists")
    for name in names:
        try:
            splits[name] = samples_of(root, name, report.layout, image_ext, sbd_root)
            report.splits[name] = len(splits[name])
            check_unique(splits[name], name)
        except DatasetError as err:
            report.problems.append(str(err))
    train = next((n for n in ("train", "training") if n in splits), None)
    for other in ("val", "validation", "test"):
        try:
            if train and other in splits:
                check_disjoint(splits[train], splits[other], f"splits {train!r} and {other!r}")
        except DatasetError as err:
            report.problems.append(str(err))
    return splits


def choose_classes(
    report: Report, class_names, ignore_index: int, void_colours, label_map: dict | None = None
) -> int:
    """Settle the encoding and the class names from the data unless given; the class count.

    Index masks: classes 0 to the largest value after label_map that is not ignore_index.
    """
    totals = report.totals
    if report.encoding is None:
        report.encoding = detect_encoding(
            totals.values, totals.colour_masks, totals.index_masks, totals.mask_names
        )
    voids = {tuple(c) for c in void_colours or []}
    if report.encoding == "colour" and report.palette:
        count = len(report.palette)
    elif report.encoding == "colour":
        ranked = [c for c, _ in totals.colours.most_common() if c not in voids]
        report.palette = [list(c) for c in ranked]
        count = len(ranked)
    elif report.encoding == "binary":
        count, class_names = 2, class_names or ["background", "foreground"]
    elif report.encoding == "cityscapes":
        count = 34  # raw labelIds; data=cityscapes maps them to the 19 train ids
    else:
        mapped = {(label_map or {}).get(v, v) for v in totals.values}
        values = [v for v in mapped if v != ignore_index]
        count = len(class_names) if class_names else max(values, default=0) + 1
    report.class_names = list(class_names or [f"class_{i}" for i in range(count)])
    return len(report.class_names)


def diagnose(
    root: str | Path,
    split: str | None = None,
    class_names: list[str] | None = VOC_CLASSES,
    ignore_index: int = 255,
    label_map: dict[int, int] | None = None,
    image_ext: str = ".jpg",
    sbd_root: str | None = None,
    layout: dict | None = None,
    mask_encoding: str | None = None,
    void_colours: list[list[int]] | None = None,
    palette: list[list[int]] | None = None,
) -> Report:
    """Scan one split (default: every split) and collect all problems.

    class_names None and palette None: the classes are found in the masks.
    """
    report = Report(Path(root), list(class_names or []), encoding=mask_encoding, palette=palette)
    if not report.root.is_dir():
        report.problems.append(f"dataset root {root} does not exist")
        return report
    try:
        report.layout = layout or detect_layout(report.root)
    except DatasetError as err:
        report.problems.append(str(err))
        return report
    splits = read_splits(report, split, image_ext, sbd_root)
    listed = {sample.id for samples in splits.values() for sample in samples}
    report.problems += unpaired(report.root, report.layout, image_ext, listed)
    unique = list({s: None for samples in splits.values() for s in samples})
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        scans = list(pool.map(scan_sample, unique))
    for scan in scans:
        report.totals.add(scan)
    report.sizes = dict(report.totals.sizes)
    try:
        count = choose_classes(report, class_names, ignore_index, void_colours, label_map)
    except AmbiguousDataError as err:
        report.problems.append(str(err))
        return report
    encoding = "index" if report.encoding == "cityscapes" else report.encoding
    decoder = MaskDecoder(
        count, ignore_index, encoding, label_map, palette=report.palette, void_colours=void_colours
    )
    for scan in scans:
        decode_counts(scan, decoder, report.pixels)
        report.problems += scan.problems
    return report

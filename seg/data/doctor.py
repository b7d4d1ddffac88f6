"""Dataset doctor: scan a VOC-layout tree, print what it holds and every problem at once.

    python -m seg.data.doctor data/VOCdevkit/VOC2012 [split] [--class-names F] [--label-map 11:255]

The table lists images per split, image sizes and class pixel frequencies; then each problem:
missing or empty split files, overlapping train/val/test ids, missing or truncated files,
colour masks, size mismatches and label values outside the classes after the label map.
The exit status is 1 when anything is wrong.
"""

import argparse
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from seg.cli import expected_errors
from seg.data.sbd import SPLIT_DIR, check_disjoint, split_samples
from seg.data.voc import (
    VOC_CLASSES,
    DatasetError,
    Sample,
    VOCSegmentationDataset,
    check_size,
    read_image,
)


@dataclass
class Report:
    """What a scan found: counts for the table and one message per problem."""

    root: Path
    class_names: list[str]
    splits: dict[str, int] = field(default_factory=dict)  # split -> number of ids
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # per value
    problems: list[str] = field(default_factory=list)


def scan(dataset: VOCSegmentationDataset, index: int) -> tuple[tuple | None, np.ndarray, list]:
    """Image size, mask histogram and the problems of one sample; reads everything it can."""
    sample, image, mask, problems = dataset.samples[index], None, None, []
    try:
        image = read_image(sample.image)
    except DatasetError as err:
        problems.append(str(err))
    try:
        mask = dataset.load_mask(index)
        if image is not None:
            check_size(sample, image, mask)
    except DatasetError as err:
        problems.append(str(err))
    size = None if image is None else (image.shape[1], image.shape[0])
    counts = np.bincount(mask.ravel(), minlength=256) if mask is not None else np.zeros(256, int)
    return size, counts, problems


def diagnose(
    root: str | Path,
    split: str | None = None,
    class_names: list[str] = VOC_CLASSES,
    ignore_index: int = 255,
    label_map: dict[int, int] | None = None,
    image_ext: str = ".jpg",
    sbd_root: str | None = None,
) -> Report:
    """Scan one split (default: every split file) and collect all problems."""
    root = Path(root)
    report = Report(root, list(class_names))
    if not root.is_dir():
        report.problems.append(f"dataset root {root} does not exist")
        return report
    names = [split] if split else sorted(p.stem for p in (root / SPLIT_DIR).glob("*.txt"))
    if not names:
        report.problems.append(f"no split files in {root / SPLIT_DIR}; add <split>.txt id lists")
    splits: dict[str, list[Sample]] = {}
    for name in names:
        try:
            splits[name] = split_samples(root, name, image_ext, sbd_root)
            report.splits[name] = len(splits[name])
        except DatasetError as err:
            report.problems.append(str(err))
    for other in ("val", "test"):
        try:
            if "train" in splits and other in splits:
                check_disjoint(splits["train"], splits[other], f"splits 'train' and {other!r}")
        except DatasetError as err:
            report.problems.append(str(err))
    unique = list({s: None for samples in splits.values() for s in samples})
    dataset = VOCSegmentationDataset(unique, len(class_names), ignore_index, label_map)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for size, counts, problems in pool.map(partial(scan, dataset), range(len(unique))):
            if size is not None:
                report.sizes[size] += 1
            report.pixels += counts
            report.problems += problems
    return report


def format_report(report: Report, ignore_index: int = 255) -> str:
    """The report as plain-text tables."""
    lines = [f"Dataset doctor: {report.root}", "", f"{'split':<24}{'images':>8}"]
    lines += [f"{name:<24}{count:>8}" for name, count in report.splits.items()]
    lines += ["", f"{'image size (w x h)':<24}{'images':>8}"]
    for (w, h), count in sorted(report.sizes.items(), key=lambda kv: -kv[1])[:10]:
        lines.append(f"{f'{w} x {h}':<24}{count:>8}")
    if len(report.sizes) > 10:
        lines.append(f"... {len(report.sizes) - 10} more sizes")
    classes = report.pixels[: len(report.class_names)]
    total = max(int(classes.sum()), 1)
    lines += ["", f"{'class':<24}{'pixels':>14}{'share':>9}"]
    for i, name in enumerate(report.class_names):
        lines.append(f"{f'{i} {name}':<24}{classes[i]:>14}{100 * classes[i] / total:>8.2f}%")
    lines.append(f"{f'{ignore_index} ignore':<24}{report.pixels[ignore_index]:>14}{'-':>9}")
    lines += ["", f"{len(report.problems)} problems" + (":" if report.problems else "")]
    lines += [f"- {p}" for p in report.problems]
    return "\n".join(lines)


def parse_label_map(text: str | None) -> dict[int, int]:
    """'11:255,12:0' -> {11: 255, 12: 0}."""
    pairs = [item.split(":") for item in (text or "").split(",") if item.strip()]
    return {int(raw): int(train_id) for raw, train_id in pairs}


@expected_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder with JPEGImages/, SegmentationClass/, ImageSets/")
    parser.add_argument("split", nargs="?", help="one split name or .txt id list (default: all)")
    parser.add_argument(
        "--class-names",
        help="file with one class name per line (default: "
        "<root>/class_names.txt if present, else the 21 VOC classes)",
    )
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--label-map", help="raw:train_id pairs, e.g. 11:255,12:0")
    parser.add_argument("--image-ext", default=".jpg")
    parser.add_argument("--sbd-root", help="SBD folder, for the trainaug/sbd_train/sbd_val splits")
    args = parser.parse_args(argv)
    names_file = Path(args.class_names or Path(args.root) / "class_names.txt")
    if args.class_names and not names_file.is_file():
        parser.error(f"--class-names {names_file} does not exist")
    text = names_file.read_text() if names_file.is_file() else "\n".join(VOC_CLASSES)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    report = diagnose(
        args.root, args.split, names, args.ignore_index, parse_label_map(args.label_map),
        args.image_ext, args.sbd_root,
    )  # fmt: skip
    print(format_report(report, args.ignore_index))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())

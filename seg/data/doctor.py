"""Dataset doctor: scan a tree, print what it holds and every problem at once, write its config.

    python -m seg.data.doctor ROOT [split] [--class-names F] [--label-map 11:255]
                              [--mask-encoding index|colour|binary] [--write-config PATH]

The layout (VOC or an image/mask folder pair), name patterns, splits and mask encoding are
detected (see detect.py) unless given. The table lists images per split, image sizes and bands,
per-band mean/std, the mask encoding and raw values, class pixel frequencies with suggested
(median-frequency) class weights; then each problem: missing or empty split files, ids listed
twice, overlapping train/val/test ids, missing or truncated files, channel or size mismatches,
colours missing from the colour table and label values outside the classes. ``--write-config``
writes a data config that ``python train.py data=NAME`` trains with, when nothing is wrong.
The exit status is 1 when anything is wrong.
"""

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg.data.config import config_text
from seg.data.detect import AmbiguousDataError, detect_encoding, detect_layout
from seg.data.encodings import MaskDecoder
from seg.data.errors import DatasetError
from seg.data.layouts import Sample, check_unique, folder_samples, pair
from seg.data.sbd import SPLIT_DIR, check_disjoint, split_samples
from seg.data.scan import Totals, decode_counts, scan_sample
from seg.data.voc import VOC_CLASSES


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


def choose_classes(report: Report, class_names, ignore_index: int, void_colours) -> int:
    """Settle the encoding and the class names from the data unless given; the class count."""
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
        values = [v for v in totals.values if v != ignore_index]
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
    try:
        report.layout = layout or detect_layout(report.root)
    except DatasetError as err:
        report.problems.append(str(err))
        return report
    splits = read_splits(report, split, image_ext, sbd_root)
    unique = list({s: None for samples in splits.values() for s in samples})
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        scans = list(pool.map(scan_sample, unique))
    for scan in scans:
        report.totals.add(scan)
    report.sizes = dict(report.totals.sizes)
    try:
        count = choose_classes(report, class_names, ignore_index, void_colours)
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


def format_report(report: Report, ignore_index: int = 255) -> str:
    """The report as plain-text tables."""
    lines = [f"Dataset doctor: {report.root}", "", f"{'split':<24}{'images':>8}"]
    lines += [f"{name:<24}{count:>8}" for name, count in report.splits.items()]
    lines += ["", f"{'image size (w x h)':<24}{'images':>8}"]
    for (w, h), count in sorted(report.sizes.items(), key=lambda kv: -kv[1])[:10]:
        lines.append(f"{f'{w} x {h}':<24}{count:>8}")
    if len(report.sizes) > 10:
        lines.append(f"... {len(report.sizes) - 10} more sizes")
    totals = report.totals
    for bands in sorted(totals.sums):
        mean, std = totals.mean_std(bands)
        lines.append(f"{bands} bands in {totals.channels[bands]} images: mean {mean} std {std}")
    layout = report.layout.get("layout")
    values = sorted(totals.values)
    lines += ["", f"layout {layout}, mask encoding {report.encoding}"]
    if values:
        lines.append(f"raw mask values ({len(values)}): {values[:40]}")
    classes = report.pixels[: len(report.class_names)]
    total = max(int(classes.sum()), 1)
    weights = suggested_weights(classes)
    lines += ["", f"{'class':<24}{'pixels':>14}{'share':>9}{'weight':>9}"]
    for i, name in enumerate(report.class_names):
        share = 100 * classes[i] / total
        lines.append(f"{f'{i} {name}':<24}{classes[i]:>14}{share:>8.2f}%{weights[i]:>9.3f}")
    lines.append(f"{f'{ignore_index} ignore':<24}{report.pixels[ignore_index]:>14}{'-':>9}")
    lines += ["", f"{len(report.problems)} problems" + (":" if report.problems else "")]
    lines += [f"- {p}" for p in report.problems]
    return "\n".join(lines)


def suggested_weights(pixels: np.ndarray) -> list[float]:
    """Median-frequency class weights (Eigen & Fergus, 2015); 0 for absent classes."""
    freqs = pixels / max(int(pixels.sum()), 1)
    median = float(np.median(freqs[freqs > 0])) if (freqs > 0).any() else 0.0
    return [round(median / f, 4) if f > 0 else 0.0 for f in freqs]


def parse_label_map(text: str | None) -> dict[int, int]:
    """'11:255,12:0' -> {11: 255, 12: 0}."""
    pairs = [item.split(":") for item in (text or "").split(",") if item.strip()]
    return {int(raw): int(train_id) for raw, train_id in pairs}


def parse_colours(text: str | None) -> list[list[int]] | None:
    """'0,0,0;255,255,255' -> [[0, 0, 0], [255, 255, 255]]."""
    items = [c for c in (text or "").split(";") if c.strip()]
    return [[int(v) for v in c.split(",")] for c in items] or None


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="dataset folder (VOC layout, or image and mask folders)")
    parser.add_argument("split", nargs="?", help="one split name or .txt id list (default: all)")
    parser.add_argument(
        "--class-names",
        help="file with one class name per line (default: <root>/class_names.txt if present, "
        "else the 21 VOC classes for a VOC tree, else class_0, class_1, ...)",
    )
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--label-map", help="raw:train_id pairs, e.g. 11:255,12:0")
    parser.add_argument("--image-ext", default=".jpg")
    parser.add_argument("--sbd-root", help="SBD folder, for the trainaug/sbd_train/sbd_val splits")
    parser.add_argument("--image-dir", help="image folder under root (default: detected)")
    parser.add_argument("--mask-dir", help="mask folder under root (default: detected)")
    parser.add_argument("--image-pattern", default="{id}", help="e.g. {id}_leftImg8bit.png")
    parser.add_argument("--mask-pattern", default="{id}", help="e.g. {id}_gtFine_labelIds.png")
    parser.add_argument("--mask-encoding", choices=("index", "colour", "binary"))
    parser.add_argument("--void-colours", help="colours to ignore, e.g. '0,0,0;255,255,255'")
    parser.add_argument(
        "--colour-table",
        help="for colour masks: a file of 'name r g b' lines, one class per line in class order "
        "(default: one class per colour found, most frequent first)",
    )
    parser.add_argument("--write-config", metavar="PATH", help="e.g. configs/data/mydata.yaml")
    return parser.parse_args(argv)


def colour_table(path: str | None) -> tuple[list[str] | None, list[list[int]] | None]:
    """Class names and colours from a file of 'name r g b' lines (names may hold spaces)."""
    if not path:
        return None, None
    rows = [line.rsplit(None, 3) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r[0] for r in rows], [[int(v) for v in r[1:]] for r in rows]


def class_names_of(args: argparse.Namespace, layout: dict | None) -> list[str] | None:
    """Names from --class-names, root/class_names.txt, the VOC classes for VOC trees, or None."""
    if args.colour_table:
        return colour_table(args.colour_table)[0]
    names_file = Path(args.class_names or Path(args.root) / "class_names.txt")
    if args.class_names and not names_file.is_file():
        raise SystemExit(f"--class-names {names_file} does not exist")
    if names_file.is_file():
        return [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    voc = (Path(args.root) / "JPEGImages").is_dir() and not layout
    return list(VOC_CLASSES) if voc else None


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    layout = None
    if args.image_dir or args.mask_dir:
        keys = ("image_dir", "mask_dir", "image_pattern", "mask_pattern")
        layout = {"layout": "folder", "splits": [], **{k: getattr(args, k) for k in keys}}
    report = diagnose(
        args.root, args.split, class_names_of(args, layout), args.ignore_index,
        parse_label_map(args.label_map), args.image_ext, args.sbd_root, layout,
        args.mask_encoding, parse_colours(args.void_colours), colour_table(args.colour_table)[1],
    )  # fmt: skip
    print(format_report(report, args.ignore_index))
    if report.problems:
        if args.write_config:
            print(f"\nNo config written to {args.write_config}: fix the problems above first.")
        return 1
    if args.write_config:
        text = config_text(report, args, parse_colours(args.void_colours))
        target = Path(args.write_config)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"\nWrote {target}; train with: python train.py data={target.stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

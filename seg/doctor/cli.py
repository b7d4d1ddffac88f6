"""Dataset doctor: scan a tree, print what it holds and every problem at once, write its config.

    python -m seg.doctor ROOT [split] [--class-names F] [--label-map 11:255]
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
import sys
from pathlib import Path

import numpy as np

from seg.cli import expected_errors
from seg.data.voc import VOC_CLASSES
from seg.doctor.data_config import config_text
from seg.doctor.detect import folder_keys
from seg.doctor.diagnosis import Report, diagnose
from seg.errors import DatasetError


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
    try:
        pairs = [item.split(":") for item in (text or "").split(",") if item.strip()]
        return {int(raw): int(train_id) for raw, train_id in pairs}
    except ValueError:
        raise DatasetError(
            f"--label-map {text!r} is not a list of raw:train_id pairs; write e.g. 11:255,12:0"
        ) from None


def parse_colours(text: str | None) -> list[list[int]] | None:
    """'0,0,0;255,255,255' -> [[0, 0, 0], [255, 255, 255]]."""
    items = [c for c in (text or "").split(";") if c.strip()]
    colours = [
        [int(v) for v in c.split(",") if v.strip()]
        for c in items
        if all(v.strip().isdigit() for v in c.split(","))
    ]
    if len(colours) != len(items) or any(len(c) != 3 or max(c) > 255 for c in colours):
        raise DatasetError(
            f"--void-colours {text!r} is not a list of R,G,B colours (0..255) separated by ';'; "
            f"write e.g. 0,0,0 or 0,0,0;255,255,255"
        )
    return colours or None


def arguments(argv: list[str] | None) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """The doctor's options; the planner (seg/plan) adds its own to the same parser."""
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
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
    parser.add_argument("--image-pattern", help="e.g. {id}_leftImg8bit.png (default: detected)")
    parser.add_argument("--mask-pattern", help="e.g. {id}_gtFine_labelIds.png (default: detected)")
    parser.add_argument("--mask-encoding", choices=("index", "colour", "binary"))
    parser.add_argument("--void-colours", help="colours to ignore, e.g. '0,0,0;255,255,255'")
    parser.add_argument(
        "--colour-table",
        help="for colour masks: a file of 'name r g b' lines, one class per line in class order "
        "(default: one class per colour found, most frequent first)",
    )
    parser.add_argument("--write-config", metavar="PATH", help="e.g. configs/data/mydata.yaml")
    return parser


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


def given_layout(args: argparse.Namespace) -> dict | None:
    """The folder layout of --image-dir/--mask-dir; patterns and splits detected unless given."""
    if not (args.image_dir or args.mask_dir):
        return None
    if not (args.image_dir and args.mask_dir):
        raise SystemExit("--image-dir and --mask-dir go together: give both")
    images, masks = Path(args.root) / args.image_dir, Path(args.root) / args.mask_dir
    try:
        found = folder_keys(images, masks)
    except DatasetError:  # reported by the scan, with the patterns given or {id}
        found = {"image_pattern": "{id}", "mask_pattern": "{id}", "splits": []}
    return found | {
        "layout": "folder",
        "image_dir": args.image_dir,
        "mask_dir": args.mask_dir,
        "image_pattern": args.image_pattern or found["image_pattern"],
        "mask_pattern": args.mask_pattern or found["mask_pattern"],
    }


def report_of(args: argparse.Namespace) -> Report:
    """The diagnosis of the tree the doctor's options describe."""
    layout = given_layout(args)
    return diagnose(
        args.root, args.split, class_names_of(args, layout), args.ignore_index,
        parse_label_map(args.label_map), args.image_ext, args.sbd_root, layout,
        args.mask_encoding, parse_colours(args.void_colours), colour_table(args.colour_table)[1],
    )  # fmt: skip


@expected_errors
def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    report = report_of(args)
    print(format_report(report, args.ignore_index))
    if report.problems:
        if args.write_config:
            print(f"\nNo config written to {args.write_config}: fix the problems above first.")
        return 1
    if args.write_config:
        argv = sys.argv[1:] if argv is None else argv
        text = config_text(report, args, parse_colours(args.void_colours), argv)
        target = Path(args.write_config)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"\nWrote {target}; train with: python train.py data={target.stem}")
    return 0

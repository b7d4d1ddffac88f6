"""The data config the doctor writes: YAML that ``python train.py data=NAME`` trains with.

Values are written as JSON, which is YAML, so names with spaces or colons need no quoting rules.
Detected datasets with a ready config (Cityscapes labelIds, ADE20K) get that config plus root.
"""

import json
from argparse import Namespace

SPLIT_PAIRS = (("train", "val"), ("training", "validation"))
MEASURED = "# Measured by the doctor"


def line(key: str, value, indent: str = "") -> str:
    return f"{indent}{key}: {json.dumps(value)}"


def split_lines(report, names: list[str]) -> list[str]:
    """train/val(/test) split keys; a seeded 80/20 division when the tree has no splits."""
    for train, val in SPLIT_PAIRS:
        if train in names and val in names:
            test = ["test"] if "test" in names and report.splits.get("test") else []
            rows = [line("train_split", train), line("val_split", val)]
            return rows + [line("test_split", t) for t in test]
    return [line("train_split", "train"), line("val_split", "val")]


def folder_lines(report) -> list[str]:
    layout = report.layout
    keys = ("image_dir", "mask_dir", "image_pattern", "mask_pattern")
    fraction = None if layout["splits"] else 0.2
    return [
        "folder:",
        *(line(k, layout[k], "  ") for k in keys),
        line("val_fraction", fraction, "  "),
    ]


def config_text(
    report, args: Namespace, void_colours: list[list[int]] | None, argv: list[str]
) -> str:
    """The YAML text of the data config for the scanned tree; argv is the doctor's command."""
    root = str(report.root.resolve())
    head = [f"# Written by: python -m seg.doctor {' '.join(argv)}"]
    if report.encoding == "cityscapes":
        return "\n".join([*head, "defaults: [cityscapes, _self_]", line("root", root)]) + "\n"
    if report.root.name == "ADEChallengeData2016":
        return "\n".join([*head, "defaults: [ade20k, _self_]", line("root", root)]) + "\n"
    folder = report.layout["layout"] == "folder"
    rows = [*head, f"defaults: [{'folder' if folder else 'voc'}, _self_]", line("root", root)]
    rows += folder_lines(report) if folder else [line("image_ext", args.image_ext)]
    rows += split_lines(report, list(report.splits))
    rows += [line("class_names", report.class_names), line("ignore_index", args.ignore_index)]
    rows.append(line("mask_encoding", report.encoding))
    if report.palette:
        rows += [line("palette", report.palette), line("void_colours", void_colours)]
    if args.label_map:
        rows.append(line("label_map", {int(k): v for k, v in label_pairs(args.label_map)}))
    bands = report.totals.channels.most_common(1)[0][0]
    mean, std = report.totals.mean_std(bands)
    rows += [MEASURED + " on these images:", line("in_channels", bands)]
    rows += [line("mean", mean), line("std", std)]
    every = report.splits.get("all")  # a seeded 80/20 division of every pair
    train = report.splits.get("train") or report.splits.get("training")
    train = train if every is None else every - max(1, round(0.2 * every))
    if train is not None and train < 8:
        rows.append(line("batch_size", max(1, train)))
    return "\n".join(rows) + "\n"


def label_pairs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item.strip()]

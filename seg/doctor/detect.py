"""Guessing a tree's layout and mask encoding for the doctor, refusing where a guess could be wrong.

Layout: VOC when ``JPEGImages/`` and ``SegmentationClass/`` exist; otherwise the image and mask
folders among the usual names, the name patterns from the first image and its closest-named mask,
and splits from sub-folders (``train/``, ``val/``, ...) or else a seeded 80/20 division; or one
folder pair per split, named alike (SegNet's CamVid: ``train/`` with ``trainannot/``, ``val/``
with ``valannot/``; or ``train/`` with ``train_labels/``), read as ``{split}`` + the mask suffix.

Encoding, from the masks' summed values: mostly colour masks -> ``colour`` with one class per
colour found; indices named ``*_labelIds.png`` -> Cityscapes; a tree named like ADE20K -> ADE20K;
values {0, 1} -> ``binary``; values {0, 255} are refused (binary foreground, or class 0 and
void?) with the key that settles it; any other values -> ``index`` with 255 as void.
"""

import os
from collections import Counter
from pathlib import Path

from seg.errors import AmbiguousDataError, DatasetError
from seg.formats import IMAGE_TYPES

IMAGE_DIRS = ("images", "image", "imgs", "img", "leftImg8bit", "rgb", "inputs")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "gtFine", "gt", "targets")
SPLIT_NAMES = ("train", "training", "val", "validation", "test")
SEPARATORS = "_-."


def first_file(folder: Path, types: tuple[str, ...]) -> Path | None:
    """The first file below folder (sorted, recursively) with one of these suffixes."""
    for dirpath, dirnames, filenames in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in types:
                return Path(dirpath) / name
    return None


def patterns(image: Path, masks: list[Path]) -> tuple[str, str]:
    """Name patterns from an image and the mask whose name shares the longest prefix with it."""

    def shared(mask: Path) -> tuple[int, bool]:
        prefix = os.path.commonprefix([image.name, mask.name])
        return len(prefix), "labelIds" in mask.name  # Cityscapes: the ids, not the colours

    mask = max(masks, key=shared)
    prefix = os.path.commonprefix([image.name, mask.name])
    while prefix and prefix[-1] in SEPARATORS:
        prefix = prefix[:-1]
    if not prefix:
        raise DatasetError(
            f"no mask name in {mask.parent} resembles image {image.name}; pass --image-pattern "
            "and --mask-pattern (e.g. '{id}.jpg' and '{id}_mask.png')"
        )
    sides = image.name[len(prefix) :], mask.name[len(prefix) :]
    plain = [s.startswith(".") and s.count(".") == 1 for s in sides]  # only an extension left
    return tuple("{id}" if p else "{id}" + s for p, s in zip(plain, sides, strict=True))


def detect_layout(root: Path) -> dict:
    """{'layout': 'voc'} or the folder layout's keys (image_dir, mask_dir, patterns, splits)."""
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return {"layout": "voc"}
    subdirs = {p.name: p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    image_dir = next((subdirs[n] for n in IMAGE_DIRS if n in subdirs), None)
    mask_dir = next((subdirs[n] for n in MASK_DIRS if n in subdirs), None)
    if image_dir is None or mask_dir is None:
        paired = split_pairs(root, subdirs)
        if paired:
            return paired
        raise DatasetError(
            f"{root} holds neither JPEGImages/ + SegmentationClass/ nor an image folder "
            f"({', '.join(IMAGE_DIRS)}) beside a mask folder ({', '.join(MASK_DIRS)}), nor "
            "one folder pair per split (train/ with trainannot/); pass --image-dir and --mask-dir"
        )
    return {"layout": "folder", **folder_keys(image_dir, mask_dir)}


def split_pairs(root: Path, subdirs: dict[str, Path]) -> dict | None:
    """The layout of one image folder and one mask folder per split, or None.

    A split folder (train/, val/, ...) pairs with the folder named the split plus one suffix
    (``annot``, ``_labels``, ...) that every split present shares.
    """
    splits = [n for n in SPLIT_NAMES if n in subdirs]
    first = splits[0] if splits else None
    suffixes = {n[len(first) :] for n in subdirs if n.startswith(first)} if first else set()
    shared = sorted(x for x in suffixes - {""} if all(s + x in subdirs for s in splits))
    if not shared:
        return None
    keys = folder_keys(subdirs[splits[0]], subdirs[splits[0] + shared[0]])
    return {
        **keys,
        "layout": "folder",
        "image_dir": "{split}",
        "mask_dir": "{split}" + shared[0],
        "splits": splits,
    }


def folder_keys(image_dir: Path, mask_dir: Path) -> dict:
    """Patterns and splits of an image folder and a mask folder."""
    image = first_file(image_dir, IMAGE_TYPES)
    if image is None:
        raise DatasetError(f"{image_dir} holds no images ({' '.join(IMAGE_TYPES)})")
    near = mask_dir / image.parent.relative_to(image_dir)
    masks = [p for p in near.glob("*") if p.is_file()] if near.is_dir() else []
    if not masks:
        raise DatasetError(
            f"{near} holds no masks for {image}; masks sit at the same relative place as images"
        )
    image_pattern, mask_pattern = patterns(image, masks)
    splits = [n for n in SPLIT_NAMES if (image_dir / n).is_dir()]
    return {
        "image_dir": image_dir.name,
        "mask_dir": mask_dir.name,
        "image_pattern": image_pattern,
        "mask_pattern": mask_pattern,
        "splits": splits,
    }


def detect_encoding(values: Counter, colour_masks: int, index_masks: int, names: list[Path]):
    """The mask encoding and the keys it brings: 'colour', 'cityscapes', 'binary' or 'index'."""
    if colour_masks > index_masks:
        return "colour"
    found = set(values)
    if names and all(n.name.endswith("_labelIds.png") for n in names) and max(found) <= 33:
        return "cityscapes"
    if found <= {0, 1}:
        return "binary"
    if found == {0, 255}:
        raise AmbiguousDataError(
            "every mask holds only 0 and 255: that is a binary mask (255 = foreground) or "
            "class 0 with 255 = void. Say which with --mask-encoding binary or --mask-encoding "
            "index (the data.mask_encoding key)"
        )
    return "index"

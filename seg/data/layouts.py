"""Which files form a split and which layout a root holds (their checks: check.py).

Folder layout under ``root``: an image folder and a mask folder (``image_dir``, ``mask_dir``),
searched recursively and paired by id. A name pattern per side says how a file name holds the id:
``{id}`` (any image extension), ``{id}_leftImg8bit.png``, ``{id}_gtFine_labelIds.png``, ... The
id is the path below the split folder without the pattern's fixed parts, so
``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png`` pairs with
``gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png`` as ``aachen/aachen_000000_000019``.

Split folders: ``image_dir`` and ``mask_dir`` may hold ``{split}``, for trees with one pair of
folders per split. SegNet's CamVid release is ``image_dir: "{split}"``, ``mask_dir:
"{split}annot"``: split ``train`` is ``train/`` with ``trainannot/``, and an id list looks its ids
up in every such pair (``train/``, ``val/``, ``test/``), refusing an id found in two.

A split is, in this order: the path of a ``.txt`` id list (absolute, or relative to root); a
split folder (``<image_dir>/<split>/`` with ``<mask_dir>/<split>/``, or the ``{split}`` pair); or,
for ``train`` and ``val`` when ``val_fraction`` is set, a seeded random division of all pairs.
That division is written to ``split_dir/{train,val}.txt`` and read back from there when present,
so reruns and resumes that share ``split_dir`` see the same split.

Layout ``auto`` (``choose_layout``): ``voc`` when root holds ``ImageSets/`` (sbd.py reads it),
``folder`` when it holds the folder keys' folders; a root holding neither is refused, naming both.
"""

import random
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from seg.formats import IMAGE_TYPES
from seg.errors import (
    DuplicateIdError,
    LayoutError,
    MissingFileError,
    RootNotFoundError,
    SplitError,
)

MASK_TYPES = (".png", ".bmp", ".tif", ".tiff")
SPLIT = "{split}"
VOC_LAYOUT = (
    "JPEGImages/<id>.jpg, SegmentationClass/<id>.png and ImageSets/Segmentation/<split>.txt"
)


class Sample(NamedTuple):
    id: str
    image: Path
    mask: Path


def pattern_regex(pattern: str) -> re.Pattern:
    """'{id}_leftImg8bit.png' -> a regex whose group 'id' is the id part of a file name."""
    if pattern.count("{id}") != 1:
        raise SplitError(f"name pattern {pattern!r} must hold {{id}} exactly once")
    before, after = pattern.split("{id}")
    return re.compile(f"^{re.escape(before)}(?P<id>.+?){re.escape(after)}$")


def index_files(folder: Path, pattern: str, types: tuple[str, ...]) -> dict[str, Path]:
    """id -> file for every file below folder whose name fits pattern; refuses a repeated id."""
    regex, plain = pattern_regex(pattern), pattern.endswith("{id}")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or (plain and path.suffix.lower() not in types):
            continue
        name = path.stem if plain else path.name
        match = regex.match(name)
        if match:
            rel = path.parent.relative_to(folder) / match["id"]
            found.setdefault(rel.as_posix(), []).append(path)
    repeated = {i: paths for i, paths in found.items() if len(paths) > 1}
    if repeated:
        first = next(iter(repeated.values()))
        raise DuplicateIdError(
            f"{len(repeated)} ids have several files in {folder} (first: "
            f"{', '.join(map(str, first))}); keep one file per id or narrow the name pattern"
        )
    return {i: paths[0] for i, paths in found.items()}


def pair(images: Path, masks: Path, image_pattern: str, mask_pattern: str) -> list[Sample]:
    """Samples for every image with a mask of the same id (the first images without refuse)."""
    found_images = index_files(images, image_pattern, IMAGE_TYPES)
    found_masks = index_files(masks, mask_pattern, MASK_TYPES)
    alone = [i for i in found_images if i not in found_masks]
    if alone:
        raise MissingFileError(
            f"{len(alone)} images in {images} have no mask in {masks} (first ids: "
            f"{', '.join(alone[:3])}); add the masks, or check data.mask_pattern="
            f"{mask_pattern!r} (and data.image_pattern={image_pattern!r})"
        )
    return [Sample(i, found_images[i], found_masks[i]) for i in sorted(found_images)]


def split_ids(path: Path) -> list[str]:
    """The ids of a split file, one per line (first word; a UTF-8 byte-order mark is dropped)."""
    text = path.read_text(encoding="utf-8-sig")
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise SplitError(f"split file {path} is empty; list one image id per line")
    return ids


def read_list(path: Path, pool: dict[str, Sample]) -> list[Sample]:
    """The samples of the ids listed in path, one per line, looked up in pool."""
    ids = split_ids(path)
    missing = [i for i in ids if i not in pool]
    if missing:
        raise MissingFileError(
            f"split file {path} lists {len(missing)} ids without an image/mask pair (first: "
            f"{', '.join(missing[:3])}); remove them from the list or add their files"
        )
    return [pool[i] for i in ids]


def ratio_split(pool: dict[str, Sample], split: str, fraction: float, seed: int, folder: Path):
    """The train or val part of a seeded division of pool, written to folder and reused."""
    if not (folder / "train.txt").is_file():
        ids = sorted(pool)
        random.Random(seed).shuffle(ids)
        n_val = max(1, round(fraction * len(ids)))
        folder.mkdir(parents=True, exist_ok=True)
        for name, part in (("val", ids[:n_val]), ("train", ids[n_val:])):
            (folder / f"{name}.txt").write_text("\n".join(sorted(part)) + "\n")
    return read_list(folder / f"{split}.txt", pool)


def split_folder(folder: str, split: str) -> str:
    """'{split}annot', 'train' -> 'trainannot'; a folder without {split} is its own."""
    return folder.replace(SPLIT, split)


def split_folders(root: Path, image_dir: str, mask_dir: str) -> dict[str, tuple[Path, Path]]:
    """Split name -> (image folder, mask folder) for every split folder pair under root."""
    if SPLIT not in image_dir:
        images, masks = root / image_dir, root / mask_dir
        subs = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
        return {n: (images / n, masks / n) for n in subs}
    regex = re.compile("(?P<split>[^/]+)".join(map(re.escape, image_dir.split(SPLIT))))
    found = {}
    for path in sorted(root.glob(image_dir.replace(SPLIT, "*"))):
        match = regex.fullmatch(path.relative_to(root).as_posix())
        masks = root / split_folder(mask_dir, match["split"]) if match else None
        if path.is_dir() and masks and masks.is_dir():  # trainannot/ is no split: no mask folder
            found[match["split"]] = (path, masks)
    return found


def all_pairs(root: Path, image_dir: str, mask_dir: str, patterns: tuple[str, str]) -> dict:
    """Id -> Sample over the whole tree: the image folder, or every split folder pair."""
    if SPLIT not in image_dir:
        return {s.id: s for s in pair(root / image_dir, root / mask_dir, *patterns)}
    folders = split_folders(root, image_dir, mask_dir).values()
    samples = [s for images, masks in folders for s in pair(images, masks, *patterns)]
    repeated = [i for i, n in Counter(s.id for s in samples).items() if n > 1]
    if repeated:
        raise DuplicateIdError(
            f"{len(repeated)} ids are in several split folders under {root} (first: "
            f"{', '.join(repeated[:3])}); an id list cannot say which is meant: keep one copy"
        )
    return {s.id: s for s in samples}


def folder_text(image_dir: str, mask_dir: str) -> str:
    """The folder layout's folders in words, for messages."""
    if SPLIT not in image_dir:
        return f"{image_dir}/ and {mask_dir}/"
    images, masks = split_folder(image_dir, "train"), split_folder(mask_dir, "train")
    return f"{image_dir}/ beside {mask_dir}/ per split (e.g. {images}/ and {masks}/)"


def check_folders(root: Path, image_dir: str, mask_dir: str) -> None:
    """Refuse a missing root, image folder or mask folder, or a root without split folders."""
    if SPLIT not in image_dir:
        for folder, key in ((root / image_dir, "image_dir"), (root / mask_dir, "mask_dir")):
            if not folder.is_dir():
                raise RootNotFoundError(
                    f"folder {folder} does not exist; point data.root and data.{key} at the "
                    "folder holding the files (python -m seg.doctor ROOT shows what it finds)"
                )
    elif not root.is_dir():
        raise RootNotFoundError(
            f"dataset root {root} does not exist; point data.root at a folder holding "
            f"{folder_text(image_dir, mask_dir)}"
        )
    elif not split_folders(root, image_dir, mask_dir):
        raise LayoutError(
            f"{root} holds no split folders {folder_text(image_dir, mask_dir)}; point data.root "
            "at such a folder, or set data.folder.image_dir and data.folder.mask_dir"
        )


def folder_samples(
    root: Path,
    split: str,
    image_dir: str = "images",
    mask_dir: str = "masks",
    image_pattern: str = "{id}",
    mask_pattern: str = "{id}",
    val_fraction: float | None = None,
    split_seed: int = 0,
    split_dir: str | None = None,
) -> list[Sample]:
    """Samples of a split in the folder layout (see the module docstring for the order)."""
    check_folders(root, image_dir, mask_dir)
    patterns = (image_pattern, mask_pattern)
    listed = Path(split) if Path(split).is_absolute() else root / split
    if split.endswith(".txt") and listed.is_file():
        return read_list(listed, all_pairs(root, image_dir, mask_dir, patterns))
    images, masks = (root / split_folder(d, split) for d in (image_dir, mask_dir))
    if SPLIT not in image_dir:
        images, masks = images / split, masks / split
    if images.is_dir():
        return pair(images, masks, *patterns)
    if split in ("train", "val") and val_fraction:
        pool = all_pairs(root, image_dir, mask_dir, patterns)
        return ratio_split(pool, split, val_fraction, split_seed, Path(split_dir or root))
    found = sorted(split_folders(root, image_dir, mask_dir))
    where = split_folder(image_dir, "<split>") if SPLIT in image_dir else f"{image_dir}/<split>"
    raise SplitError(
        f"split {split!r} is neither a .txt id list under {root} nor a split folder {where}/ "
        f"(found: {found}); name one of those, or set data.folder.val_fraction (e.g. 0.2) for "
        "a seeded train/val division"
    )


def choose_layout(root: Path, image_dir: str = "images", mask_dir: str = "masks") -> str:
    """'voc' when root holds ImageSets/, 'folder' when it holds the folder layout's folders."""
    folders = folder_text(image_dir, mask_dir)
    if not root.is_dir():
        raise RootNotFoundError(
            f"dataset root {root} does not exist; point data.root at a folder holding "
            f"{folders} (the folder layout) or {VOC_LAYOUT} (the VOC layout)"
        )
    if (root / "ImageSets").is_dir():
        return "voc"
    plain = SPLIT not in image_dir and (root / image_dir).is_dir()
    if plain or split_folders(root, image_dir, mask_dir):
        return "folder"
    raise LayoutError(
        f"dataset root {root} holds neither layout that data.layout=auto reads: the folder "
        f"layout ({folders}) nor the VOC layout ({VOC_LAYOUT}). Point data.root at a folder "
        "in one of them (python -m seg.doctor ROOT shows what it holds), or set "
        "data.layout and data.folder for another tree"
    )

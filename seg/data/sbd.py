"""Which files form a split: VOC split files, id lists, SBD's splits and the trainaug merge.

VOC layout under ``root``: ``JPEGImages/<id><image_ext>``, ``SegmentationClass/<id>.png`` and
``ImageSets/Segmentation/<split>.txt``. A split may also be the path of any ``.txt`` id list
(``data/voc_splits/seg11valid.txt``), read against ``root``.

SBD (Hariharan et al., ICCV 2011, http://home.bharathh.info/pubs/codes/SBD/download.html) under
``sbd_root``: ``img/<id>.jpg``, ``cls/<id>.mat`` (``GTcls.Segmentation``, classes 0..20),
``train.txt`` (8,498 ids) and ``val.txt`` (2,857 ids).

- ``sbd_train`` / ``sbd_val``: SBD's own splits. SBD train, validated on ``seg11valid`` (VOC2011 val
  minus SBD train, 736 ids), is the FCN paper's protocol (Long et al., CVPR 2015).
- ``trainaug``: VOC2012 train ∪ SBD train ∪ SBD val minus VOC2012 val (10,582 images), with VOC's
  own masks wherever VOC has them and SBD's elsewhere.
"""

from pathlib import Path

from seg.data.layouts import Sample, split_ids
from seg.errors import DatasetError, RootNotFoundError, SplitError, SplitOverlapError

SPLIT_DIR = "ImageSets/Segmentation"
SBD_SPLITS = {"sbd_train": "train", "sbd_val": "val"}  # split name -> SBD's own split file
VIRTUAL_SPLITS = ["trainaug", *SBD_SPLITS]
SBD_LAYOUT = "img/<id>.jpg, cls/<id>.mat, train.txt and val.txt"


def read_ids(path: Path) -> list[str]:
    """Ids of a split file, one per line; refuses a missing or empty file."""
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise SplitError(
            f"split file {path} is missing; valid split names here are {names + VIRTUAL_SPLITS}, "
            "or the path of a .txt id list (e.g. data.val_split=data/voc_splits/seg11valid.txt)"
        )
    ids = split_ids(path)
    leaving = [i for i in ids if Path(i).is_absolute() or ".." in Path(i).parts]
    if leaving:
        raise SplitError(
            f"split file {path} lists ids that lead outside the dataset root "
            f"({', '.join(leaving[:3])}); ids name files under data.root, so remove those lines "
            f"or move the files in"
        )
    return ids


def check_root(root: Path) -> None:
    """Refuse a dataset root that does not exist, explaining the expected layout."""
    if not root.is_dir():
        raise RootNotFoundError(
            f"dataset root {root} does not exist. Point data.root at a folder holding "
            f"JPEGImages/, SegmentationClass/ and {SPLIT_DIR}/<split>.txt (e.g. .../VOCdevkit/"
            "VOC2012), or set data.download=true for Pascal VOC"
        )


def voc_samples(root: Path, split: str, image_ext: str = ".jpg") -> list[Sample]:
    """Samples of a split: a name in ImageSets/Segmentation, or the path of an id list (.txt)."""
    check_root(root)
    path = Path(split) if split.endswith(".txt") else root / SPLIT_DIR / f"{split}.txt"
    return [
        Sample(i, root / "JPEGImages" / f"{i}{image_ext}", root / "SegmentationClass" / f"{i}.png")
        for i in read_ids(path)
    ]


def sbd_samples(sbd_root: Path, split: str) -> list[Sample]:
    """Samples of SBD's own split file (train or val): images from img/, masks from cls/."""
    return [
        Sample(i, sbd_root / "img" / f"{i}.jpg", sbd_root / "cls" / f"{i}.mat")
        for i in read_ids(sbd_root / f"{split}.txt")
    ]


def trainaug_samples(root: Path, sbd_root: Path, image_ext: str = ".jpg") -> list[Sample]:
    """VOC train ∪ SBD train ∪ SBD val minus VOC val, sorted by id; VOC masks take precedence."""
    voc = {s.id: s for s in voc_samples(root, "train", image_ext)}
    val = {s.id for s in voc_samples(root, "val", image_ext)}
    sbd = {s.id: s for split in ("train", "val") for s in sbd_samples(sbd_root, split)}
    merged = {**sbd, **voc}
    return [merged[i] for i in sorted(merged.keys() - val)]


def uses_sbd(*splits: str | None) -> bool:
    """Whether any of these split names reads SBD."""
    return any(s in VIRTUAL_SPLITS for s in splits)


def split_samples(
    root: str | Path, split: str, image_ext: str = ".jpg", sbd_root: str | Path | None = None
) -> list[Sample]:
    """Samples of any split name: trainaug, sbd_train, sbd_val, a VOC split name, or a .txt path."""
    root = Path(root)
    if not uses_sbd(split):
        return voc_samples(root, split, image_ext)
    if sbd_root is None or not Path(sbd_root).is_dir():
        raise DatasetError(
            f"split {split!r} needs SBD, but data.sbd_root={sbd_root} is not a folder; point it at "
            f"the SBD dataset ({SBD_LAYOUT}, e.g. data/SBD) or set data.download=true"
        )
    if split == "trainaug":
        return trainaug_samples(root, Path(sbd_root), image_ext)
    return sbd_samples(Path(sbd_root), SBD_SPLITS[split])


def check_disjoint(train: list[Sample], other: list[Sample], names: str) -> None:
    """Refuse training ids that also appear in an evaluation split, naming the first few."""
    shared = sorted({s.id for s in train} & {s.id for s in other})
    if shared:
        raise SplitOverlapError(
            f"{names} share {len(shared)} ids (first: {', '.join(shared[:5])}); "
            "training on evaluation images inflates every metric: choose disjoint splits"
        )

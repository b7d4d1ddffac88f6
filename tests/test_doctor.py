"""seg.doctor.cli: the table of a clean tree, and every problem of a broken one at once."""

import numpy as np
from conftest import shared_data
from PIL import Image
from test_data import corrupt

from seg.doctor.cli import diagnose, main


def test_clean_tree_counts_splits_sizes_and_pixels(voc_root):
    report = diagnose(voc_root)
    assert report.problems == []
    assert report.splits == {"train": 6, "val": 3}
    assert report.sizes == {(64, 48): 9}
    masks = [np.array(Image.open(p)) for p in (voc_root / "SegmentationClass").glob("*.png")]
    expected = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)
    assert np.array_equal(report.pixels, expected)


def test_broken_tree_lists_every_problem(voc_root, capsys):
    for case in ("missing image", "truncated image", "overlap"):
        corrupt(voc_root, case)
    seg_dir = voc_root / "SegmentationClass"
    Image.open(seg_dir / "train_0004.png").convert("RGB").save(seg_dir / "train_0004.png")
    Image.open(seg_dir / "train_0005.png").crop((0, 0, 10, 10)).save(seg_dir / "train_0005.png")
    mask = Image.open(seg_dir / "val_0000.png")
    mask.putpixel((0, 0), 40)
    mask.save(seg_dir / "val_0000.png")
    (voc_root / "ImageSets/Segmentation/test.txt").write_text("")
    report = diagnose(voc_root)
    expected = [
        "test.txt is empty",
        "splits 'train' and 'val' share 2 ids (first: train_0001, train_0003)",
        "image " + str(voc_root / "JPEGImages/train_0000.jpg") + " is truncated",
        "image " + str(voc_root / "JPEGImages/train_0002.jpg") + " is missing",
        "mask " + str(seg_dir / "train_0004.png") + " is a colour (RGB) image",
        "mask " + str(seg_dir / "train_0005.png") + " is 10x10 but image",
        "mask " + str(seg_dir / "val_0000.png") + " holds values [40]",
    ]
    assert len(report.problems) == len(expected)
    for text in expected:
        assert sum(text in p for p in report.problems) == 1, text
    assert report.splits == {"train": 6, "val": 3}  # the empty split is a problem, not a row
    assert main([str(voc_root)]) == 1
    out = capsys.readouterr().out
    assert "7 problems:" in out and "train_0005.png is 10x10" in out


def test_main_prints_the_table_for_real_voc_data(capsys):
    root = shared_data("voc_mini") / "VOC2012"
    assert main([str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "train                          3" in lines and "val                           14" in lines
    )
    assert "513 x 513                     14" in lines and "0 problems" in lines
    assert any(line.startswith("15 person") for line in lines)

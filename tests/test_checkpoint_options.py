"""What a checkpoint carries into evaluate.py and predict.py, each option at a non-default value.

One shared run (``conftest.options_run``) trained with eval_scale 0.5, flip TTA, three named
classes in their own colours, its own mean/std and 4-band images. evaluate.py must reproduce the
val/mIoU training logged, and predict.py must write the classes evaluate.py scored. Each option
is also shown to change the answer, so that a path that ignores it cannot pass.
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose
from PIL import Image

from evaluate import evaluate
from predict import predict
from seg.checkpoint import load_network
from seg.errors import ChannelError
from seg.inference import infer
from seg.report import images as report_images

VAL_IDS = ("val_0000", "val_0001")


def last(run) -> Path:
    return run.run_dir / "checkpoints" / "last.ckpt"


def evaluated(run, out: Path, *overrides: str, data: list[str] | None = None, ckpt=None) -> dict:
    """The one result row of evaluate.py on the run's val split (its own data config)."""
    data = run.data if data is None else data
    cfg = compose("eval", [f"ckpt_path={ckpt or last(run)}", *data, *overrides], out)
    (row,) = evaluate(cfg)["results"]
    return row


def val_images(run, folder: Path) -> Path:
    """The val images alone in a folder, as predict.py's input."""
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in VAL_IDS:
        shutil.copy(run.root / "JPEGImages" / f"{image_id}.png", folder)
    return folder


def predicted(run, images: Path, out: Path, *overrides: str, ckpt=None) -> dict[str, np.ndarray]:
    """predict.py's masks by image id."""
    cfg = compose("predict", [f"ckpt_path={ckpt or last(run)}", f"input={images}", *overrides], out)
    return {Path(p).stem: np.array(Image.open(p)) for p in predict(cfg)["predictions"]}


def test_evaluate_reproduces_the_logged_scores_with_the_checkpoints_options(options_run, tmp_path):
    row = evaluated(options_run, tmp_path / "own")
    logged = options_run.metrics
    assert row["mIoU"] == pytest.approx(logged["val/mIoU"], abs=1e-6)
    assert row["pixel_acc"] == pytest.approx(logged["val/pixel_acc"], abs=1e-6)
    for name in options_run.options["class_names"]:
        assert row["iou"][name] == pytest.approx(logged[f"val/iou/{name}"], abs=1e-6), name
    # Each option alone changes the score: evaluating without it cannot reproduce the log.
    for ignored in ("inference.scales=[1.0]", "inference.flip=false"):
        other = evaluated(options_run, tmp_path / "other", ignored)
        assert abs(other["mIoU"] - logged["val/mIoU"]) > 1e-3, ignored


def test_predict_writes_the_classes_evaluate_scored(options_run, tmp_path):
    evaluated(options_run, tmp_path / "eval", "save_predictions=true")
    results = tmp_path / "eval/predictions/last/results/VOC2012/Segmentation/comp6_val_cls"
    scored = {i: np.array(Image.open(results / f"{i}.png")) for i in VAL_IDS}
    images = val_images(options_run, tmp_path / "images")
    masks = predicted(options_run, images, tmp_path / "predict")
    assert masks.keys() == scored.keys()
    for image_id, mask in masks.items():
        assert mask.shape == (48, 64) and np.array_equal(mask, scored[image_id]), image_id
    assert len(np.unique(np.stack(list(masks.values())))) > 1  # not a constant prediction
    for ignored in ("inference.scales=[1.0]", "inference.flip=false"):
        other = predicted(options_run, images, tmp_path / "other", ignored)
        assert any(not np.array_equal(other[i], masks[i]) for i in VAL_IDS), ignored


def test_predict_normalises_the_checkpoints_bands_with_its_mean_and_std(options_run, tmp_path):
    images = val_images(options_run, tmp_path / "images")
    masks = predicted(options_run, images, tmp_path / "predict")
    model, _ = load_network(last(options_run))
    mean, std = (torch.tensor(options_run.options[k]) for k in ("mean", "std"))

    def by_hand(image_id: str, mean: torch.Tensor) -> np.ndarray:
        pixels = np.array(Image.open(images / f"{image_id}.png"))  # (48, 64, 4) RGBA
        assert pixels.shape == (48, 64, 4)
        x = ((torch.from_numpy(pixels).float() / 255 - mean) / std).permute(2, 0, 1)[None]
        with torch.inference_mode():
            return infer(model, x, flip=True, scales=[0.5]).argmax(dim=1)[0].numpy()

    for image_id in VAL_IDS:
        assert np.array_equal(masks[image_id], by_hand(image_id, mean)), image_id
    grey = torch.full((4,), 0.5)  # another mean gives other classes: the mean is not idle
    assert any(not np.array_equal(masks[i], by_hand(i, grey)) for i in VAL_IDS)
    rgb = tmp_path / "rgb" / "three.png"
    rgb.parent.mkdir()
    Image.open(images / "val_0000.png").convert("RGB").save(rgb)
    with pytest.raises(ChannelError, match="does not have the 4 bands the checkpoint"):
        predicted(options_run, rgb, tmp_path / "refused")


def test_names_and_colours_come_from_the_checkpoint(options_run, tmp_path, monkeypatch, caplog):
    names, palette = options_run.options["class_names"], options_run.options["palette"]
    overlays = []

    def save_overlay(path, image, pred, class_names, colours):
        overlays.append((list(class_names), [list(c) for c in colours]))
        original(path, image, pred, class_names, colours)

    original = report_images.save_overlay
    monkeypatch.setattr(report_images, "save_overlay", save_overlay)
    images = val_images(options_run, tmp_path / "images")
    predicted(options_run, images, tmp_path / "predict")
    assert overlays == [(names, palette)] * len(VAL_IDS)
    flat = Image.open(tmp_path / "predict/predict/val_0000.png").getpalette()[:9]
    assert flat == [c for rgb in palette for c in rgb]
    # Without data.palette the data's colours would be the masks' own (VOC's): the
    # checkpoint's colours still win in the saved predictions.
    data = [o for o in options_run.data if not o.startswith("data.palette=")]
    evaluated(options_run, tmp_path / "eval", "save_predictions=true", data=data)
    saved = next((tmp_path / "eval/predictions").rglob("val_0000.png"))
    assert Image.open(saved).getpalette()[:9] == [c for rgb in palette for c in rgb]
    # Classes named otherwise by the data config are scored under the data's names, with a
    # warning naming both lists.
    renamed = [o for o in data if not o.startswith("data.class_names=")]
    with caplog.at_level(logging.WARNING, logger="seg"):
        row = evaluated(
            options_run, tmp_path / "renamed", data=[*renamed, "data.class_names=[a,b,c]"]
        )
    assert list(row["iou"]) == ["a", "b", "c"]
    assert "trained with classes ['ground', 'rock', 'tree']" in caplog.text


def test_a_model_folder_carries_the_same_options(options_run, tmp_path):
    from seg.pretrained import save_pretrained

    folder = save_pretrained(last(options_run), tmp_path / "model")
    row = evaluated(options_run, tmp_path / "eval", ckpt=folder)
    assert row["mIoU"] == pytest.approx(options_run.metrics["val/mIoU"], abs=1e-6)
    images = val_images(options_run, tmp_path / "images")
    from_folder = predicted(options_run, images, tmp_path / "folder", ckpt=folder)
    from_checkpoint = predicted(options_run, images, tmp_path / "checkpoint")
    for image_id, mask in from_checkpoint.items():
        assert np.array_equal(from_folder[image_id], mask), image_id
    flat = Image.open(tmp_path / "folder/predict/val_0000.png").getpalette()[:9]
    assert flat == [c for rgb in options_run.options["palette"] for c in rgb]


def test_evaluate_does_not_silently_score_with_another_mean_than_the_checkpoints(
    options_run, tmp_path
):
    data = [o for o in options_run.data if not o.startswith(("data.mean=", "data.std="))]
    data += ["data.mean=[0.5,0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25,0.25]"]
    row = evaluated(options_run, tmp_path / "other", data=data)  # the checkpoint's are used
    assert row["mIoU"] == pytest.approx(options_run.metrics["val/mIoU"], abs=1e-6)


def test_evaluate_reads_the_checkpoints_bands_whatever_the_data_config_says(options_run, tmp_path):
    drop = ("data.in_channels=", "data.mean=", "data.std=")
    data = [o for o in options_run.data if not o.startswith(drop)]  # 3 bands, ImageNet stats
    row = evaluated(options_run, tmp_path / "three", data=data)
    assert row["mIoU"] == pytest.approx(options_run.metrics["val/mIoU"], abs=1e-6)

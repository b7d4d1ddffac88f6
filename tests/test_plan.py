"""The planner (seg/plan) on generated trees of several kinds, with known answers.

Each tree's masks hold a background, a vertical bar 3 px wide (a "pole") and a 21x21 square,
so thickness, areas and shares are known. Probe timings are injected (``timings``) except in
the one command-line test that probes for real at tiny sizes.
"""

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from omegaconf import OmegaConf
from PIL import Image

from seg.errors import ConfigError
from seg.plan import __main__ as plan_cli
from seg.plan.choices import make_plan
from seg.plan.fingerprint import Fingerprint, fingerprint
from seg.plan.groups import group_of, group_split, groups_found
from seg.plan.probe import Candidate, Timing
from seg.plan.rules import candidates, epochs, minimum_budget, resolution
from seg.plan.write import experiment_text
from tests.conftest import REPO, compose


def mask_of(h: int, w: int, fg: int = 2) -> np.ndarray:
    """Background 0, a 3-px bar of class 1 at column 5, a 21x21 square of class ``fg``."""
    mask = np.zeros((h, w), np.uint8)
    mask[:, 5:8] = 1
    mask[10:31, 20:41] = fg
    return mask


def write_tree(root: Path, ids: list[str], size=(64, 96), bands=3, bit16=False, binary=False):
    """images/ and masks/ folders, one pair per id; images darker inside objects."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for image_id in ids:
        mask = mask_of(*size)
        if binary:
            mask = np.where(mask == 2, 255, 0).astype(np.uint8)
        top = 65535 if bit16 else 255
        image = rng.integers(0, top // 2, (*size, bands)) + (mask[..., None] == 0) * (top // 3)
        image = image.astype(np.uint16 if bit16 else np.uint8)
        if bit16:
            tifffile.imwrite(root / "images" / f"{image_id}.tif", image, photometric="minisblack")
        else:
            Image.fromarray(image[..., 0] if bands == 1 else image).save(
                root / "images" / f"{image_id}.png"
            )
        Image.fromarray(mask).save(root / "masks" / f"{image_id}.png")
    return root


def scanned(root: Path, *options: str):
    args = plan_cli.arguments([str(root), "--budget", "10m", "--name", "t", *options])
    report, decoder = plan_cli.diagnose(args)
    return fingerprint(report, decoder), args, report


def timings(fp, seconds_per_pixel=1e-5):
    """Probe timings proportional to pixels (resnet18 twice mobilenet's), no clock."""
    slow = {"resnet18": 2.0, "mobilenet_v3_large": 1.0}
    found = candidates(fp, resolution(fp)[0])
    return [
        Timing(c, round(slow[c.backbone] * seconds_per_pixel * c.crop[0] * c.crop[1]
                        * c.batch_size, 4), 100.0, True)
        for c in found
    ]  # fmt: skip


def planned(fp, budget=600.0, splits="/tmp/splits", scale=1e-5):
    return make_plan(fp, timings(fp, scale), budget, f"{budget:g}s", splits)


SCENES = [f"scene{s}_{i:04d}" for s in "ABCDE" for i in range(4)]


def test_group_names_and_a_split_that_shares_no_group():
    assert group_of("0006R0_f01230") == "0006R0" and group_of("0001TP_006690") == "0001TP"
    assert group_of("patient03_slice12") == "patient03_slice" and group_of("tile_3_5") == "tile_3"
    assert groups_found([f"img_{i:04d}" for i in range(9)]) is None  # one group: none
    train, val, by_group = group_split(SCENES, 0.2, seed=0)
    assert by_group and len(val) == 4 and len(train) == 16
    assert not {group_of(i) for i in train} & {group_of(i) for i in val}
    assert group_split(SCENES, 0.2, seed=0) == (train, val, True)  # deterministic


def test_grey_tree_with_groups_fingerprint_and_plan(tmp_path):
    fp, _, _ = scanned(write_tree(tmp_path / "grey", SCENES, bands=1))
    assert fp.bands == 1 and fp.bit_depth == 8 and fp.size == (64, 96)
    assert fp.groups == {f"scene{s}": 4 for s in "ABCDE"} and fp.val_ids == []
    pixels = 64 * 96
    assert fp.shares == pytest.approx([1 - (64 * 3 + 21 * 21) / pixels, 64 * 3 / pixels,
                                       21 * 21 / pixels], abs=1e-5)  # fmt: skip
    assert fp.thickness == [pytest.approx(fp.thickness[0]), 3.0, 21.0]
    assert fp.area[1:] == [64 * 3, 21 * 21] and fp.presence == [20, 20, 20]
    plan = planned(fp)
    train, val = plan.splits["train"], plan.splits["val"]
    assert len(val) == 4 and not {group_of(i) for i in train} & {group_of(i) for i in val}
    assert plan.value("model.in_channels") == 1 and plan.value("data.color_jitter") == 0.0
    assert plan.value("model.eval_scale") == 1.0  # the 3-px bar needs native resolution
    assert plan.value("data.crop_size") == [32, 64]  # 0.8 of 64x96, multiples of 32
    assert plan.value("data.val_split") == "/tmp/splits/val.txt"
    assert not any("no groups" in what for what, _ in plan.assumed)


def test_binary_0_255_masks_read_as_binary_and_said_so(tmp_path):
    ids = [f"cell{i:03d}" for i in range(10)]
    fp, args, _ = scanned(write_tree(tmp_path / "cells", ids, binary=True))
    assert args.mask_encoding == "binary" and fp.class_names == ["background", "foreground"]
    plan = planned(fp)
    assumed = " ".join(what + override for what, override in plan.assumed)
    assert "only 0 and 255" in assumed and "--mask-encoding index" in assumed
    assert "no groups" in assumed  # cell000 .. cell009: one prefix, no grouping
    # foreground 7 % vs background 93 % (13x) would take OHEM, but 8 training images take plain
    # cross-entropy without class weights, and the plan says how to go back
    assert plan.value("model.loss") == "ce" and plan.value("model.class_weights") is None
    assert re.search(
        r"model.loss=ohem model.ohem_min_kept=\d+ model.class_weights=median_", assumed
    )


def test_four_band_16_bit_tree(tmp_path):
    fp, _, report = scanned(write_tree(tmp_path / "fields", SCENES[:10], bands=4, bit16=True))
    assert fp.bands == 4 and fp.bit_depth == 16
    assert fp.mean == report.totals.mean_std(4)[0] and len(fp.std) == 4
    plan = planned(fp)
    assert plan.value("model.in_channels") == 4 and plan.value("data.in_channels") == 4
    assert plan.value("data.color_jitter") == 0.0


def test_large_tiles_get_a_crop_smaller_than_the_image(tmp_path):
    fp, _, _ = scanned(write_tree(tmp_path / "tiles", SCENES[:6], size=(700, 900)))
    assert fp.size == (700, 900)
    factor, why = resolution(fp)
    assert factor == 1.0 and "3 px" in why
    plan = planned(fp, scale=1e-7)
    crop = plan.value("data.crop_size")
    assert crop == [512, 512] and plan.value("data.scale_range") == [0.5, 1.5]


def test_few_images_lower_the_batch_and_say_so(tmp_path):
    fp, _, _ = scanned(write_tree(tmp_path / "few", ["a_1", "a_2", "b_1", "b_2", "c_1"]))
    plan = planned(fp)
    assert plan.value("data.batch_size") == 2  # 4 training images: at most half
    assert any(what.startswith("few images") for what, _ in plan.assumed)


def test_budget_arithmetic_and_a_budget_too_small(tmp_path):
    fp, _, _ = scanned(write_tree(tmp_path / "t", SCENES))
    timing = Timing(Candidate("resnet18", (32, 64), 4), 1.0, None, True)
    assert epochs(fp, timing, 600) == pytest.approx(0.9 * 600 * 4 / 20)
    # 20 images, batch 4: 5 steps per epoch, but the budget times at least 10 steps
    assert minimum_budget(fp, timing, 1.0) > 1.1 * 10
    with pytest.raises(ConfigError, match=r"the minimum is (\d+) s; give --budget (\d+)m") as e:
        planned(fp, budget=5, scale=1e-3)
    found = re.search(r"the minimum is (\d+) s; give --budget (\d+)m", str(e.value))
    seconds, minutes = map(int, found.groups())
    assert (minutes - 1) * 60 < seconds <= minutes * 60
    assert planned(fp, budget=seconds + 1, scale=1e-3).value("trainer.budget") == f"{seconds + 1}s"


def test_budget_too_small_exits_2_with_one_paragraph(tmp_path, monkeypatch, capsys):
    root = write_tree(tmp_path / "t", SCENES)
    monkeypatch.setattr(plan_cli, "probe", lambda found, *a: [
        Timing(c, 5.0, None, True) for c in found])  # fmt: skip
    argv = [str(root), "--budget", "20s", "--name", "t", "--configs", str(tmp_path / "c")]
    with pytest.raises(SystemExit) as stop:
        plan_cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ConfigError: --budget 20s is too small") and "Traceback" not in err


def test_same_fingerprint_and_probe_give_the_same_plan(tmp_path):
    root = write_tree(tmp_path / "t", SCENES)
    first, again = scanned(root)[0], scanned(root)[0]
    assert first.as_dict() == again.as_dict()
    texts = [experiment_text("t", fp, planned(fp), ["ROOT"], "cpu") for fp in (first, again)]
    assert texts[0] == texts[1]
    assert "# probe: " in texts[0] and "crop_size: [32, 64]  # median image 64x96" in texts[0]


def written_plan(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    root = write_tree(tmp_path / "grey", SCENES, bands=1)
    monkeypatch.setattr(plan_cli, "probe", lambda found, *a: timings_of(found))
    configs, splits = tmp_path / "configs", tmp_path / "splits"
    argv = [str(root), "--budget", "2m", "--name", "grey", "--configs", str(configs),
            "--splits-dir", str(splits)]  # fmt: skip
    assert plan_cli.main(argv) == 0
    return configs, splits


def timings_of(found):
    return [Timing(c, 0.01 * c.batch_size, 50.0, True) for c in found]


def test_written_experiment_composes_and_builds(tmp_path, monkeypatch, capsys):
    configs, splits = written_plan(tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert f"python train.py experiment=grey 'hydra.searchpath=[file://{configs}]'" in out
    assert (splits / "val.txt").read_text().split() and (configs / "data" / "grey.yaml").exists()
    overrides = ["experiment=grey", f"hydra.searchpath=[file://{configs}]",
                 "data.num_workers=0", "data.persistent_workers=false"]  # fmt: skip
    cfg = compose("train", overrides, tmp_path / "out")
    assert cfg.model.backbone == "mobilenet_v3_large" and cfg.model.arch == "fcn8s"
    assert cfg.trainer.budget == "2m" and cfg.model.warmup_iters >= 10
    # ImageNet weights where the machine has them; random init, with a warning, where not
    assert cfg.model.weights == "imagenet" and cfg.model.weights_required is False
    assert "model.weights=null trains from scratch" in out
    from hydra.utils import instantiate

    from seg.models import build_model

    data = instantiate(cfg.data)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (cfg.data.batch_size, 1, 32, 64)
    model = build_model(cfg.model.arch, cfg.model.backbone, data.num_classes, in_channels=1)
    assert model(batch["image"]).shape == (cfg.data.batch_size, 3, 32, 64)


def test_command_line_probes_this_device(tmp_path, capsys):
    root = write_tree(tmp_path / "t", SCENES, size=(40, 48))
    argv = [str(root), "--budget", "5m", "--name", "t", "--configs", str(tmp_path / "c"),
            "--splits-dir", str(tmp_path / "s"), "--probe-seconds", "1"]  # fmt: skip
    assert plan_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "s/step (measured" in out and "Train with:" in out


@pytest.mark.slow
def test_plan_train_evaluate(tmp_path, monkeypatch):
    configs, splits = written_plan(tmp_path, monkeypatch)
    out, search = tmp_path / "run", f"hydra.searchpath=[file://{configs}]"
    train = [sys.executable, "train.py", "experiment=grey", search, "trainer.budget=60s",
             "data.num_workers=0", "data.persistent_workers=false", "model.backbone=tiny",
             f"paths.output_dir={out}", f"hydra.run.dir={out}"]  # fmt: skip
    done = subprocess.run(train, cwd=REPO, timeout=900, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "budget.json").read_text())["steps"] >= 10
    scores = tmp_path / "eval"
    evaluate = [sys.executable, "evaluate.py", f"ckpt_path={out}/checkpoints/last.ckpt",
                "data=grey", search, f"data.val_split={splits}/val.txt", "data.num_workers=0",
                f"hydra.run.dir={scores}", f"paths.output_dir={scores}"]  # fmt: skip
    done = subprocess.run(evaluate, cwd=REPO, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mean IU" in done.stdout or (scores / "metrics.json").exists()


def camvid_like() -> Fingerprint:
    """CamVid's fingerprint as the planner measured it (docs/plan.md), without reading it."""
    names = ["sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
             "pedestrian", "bicyclist"]  # fmt: skip
    shares = [0.16, 0.22, 0.01, 0.322, 0.09, 0.1, 0.012, 0.03, 0.04, 0.0066, 0.0094]
    return Fingerprint(
        root="camvid", splits={"train": 367, "val": 101},
        train_ids=[f"0016E5_{i:05d}" for i in range(367)],
        val_ids=[f"0016E5_{i:05d}" for i in range(400, 501)], size=(360, 480),
        largest=(360, 480), bands=3, bit_depth=8, mean=[0.39, 0.40, 0.41], std=[0.3] * 3,
        encoding="index", raw_values=list(range(11)) + [255], class_names=names, shares=shares,
        thickness=[200, 150, 3.4, 200, 60, 100, 31, 40, 50, 12.2, 17.4], area=[1e4] * 11,
        presence=[24] * 11, sampled=24, groups={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("resnet_288x384", "backbone", "crop"),
    [
        (1.4, "mobilenet_v3_large", [288, 384]),
        (3.4, "mobilenet_v3_large", [192, 288]),
        (8.0, "mobilenet_v3_large", [160, 192]),
    ],  # fmt: skip
)
def test_camvid_plan_is_the_recipe_where_its_setup_fits_8_epochs(resnet_288x384, backbone, crop):
    """Seconds per step proportional to pixels: an idle, a loaded and a very slow machine."""
    fp = camvid_like()
    per_pixel = resnet_288x384 / (4 * 288 * 384)  # resnet18; mobilenet at half
    found = candidates(fp, resolution(fp)[0])
    assert {c.crop for c in found} == {(288, 384), (192, 288), (160, 192)}
    speed = {"resnet18": per_pixel, "mobilenet_v3_large": per_pixel / 2}
    probed = [Timing(c, speed[c.backbone] * 4 * c.crop[0] * c.crop[1], None, True) for c in found]
    plan = make_plan(fp, probed, 1200, "20m", "/tmp/s")
    assert plan.value("model.backbone") == backbone and plan.value("data.crop_size") == crop
    assert plan.value("model.loss") == "ohem" and plan.value("model.eval_scale") == 1.0
    assert plan.value("model.class_weights") == "median_frequency_sqrt"
    assert plan.value("data.batch_size") == 4 and 10 <= plan.value("model.warmup_iters") <= 50
    recipe = OmegaConf.load(REPO / "configs" / "experiment" / "camvid.yaml")
    assert plan.value("model.lr") == recipe.model.lr  # the recipe's cross-validated rate


def test_few_training_images_take_plain_cross_entropy_from_9_down():
    """The loss rule's image count: 10 CamVid-like images keep OHEM, 9 do not."""
    fp = camvid_like()
    probed = [Timing(c, 0.5, None, True) for c in candidates(fp, 1.0)]
    for n, loss, weights in ((10, "ohem", "median_frequency_sqrt"), (9, "ce", None)):
        plan = make_plan(replace(fp, train_ids=fp.train_ids[:n]), probed, 1200, "20m", "/tmp/s")
        assert (plan.value("model.loss"), plan.value("model.class_weights")) == (loss, weights)

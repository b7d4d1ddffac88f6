"""TensorBoard: evenly spaced panels with legends, the confusion figure, hparams off Scalars."""

from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_TRAIN, compose, write_voc_tree
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from seg.data.voc import VOC_CLASSES, voc_colormap
from seg.report.draw import IGNORE_COLOUR, SWATCH, legend_panel
from seg.report.tensorboard import panel_positions
from train import train


def test_panel_positions_are_spread_over_the_whole_set():
    assert panel_positions(101, 4) == [0, 33, 67, 100]
    assert panel_positions(233, 12)[:3] == [0, 21, 42] and panel_positions(233, 12)[-1] == 232
    assert panel_positions(3, 4) == [0, 1, 2]
    assert panel_positions(0, 4) == []
    gaps = np.diff(panel_positions(1000, 9))
    assert gaps.min() >= 124 and gaps.max() <= 125


def test_a_panel_legend_shows_each_present_class_in_its_colour():
    palette = voc_colormap()
    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 10:30] = 15  # person
    truth[0] = 255
    pred = np.zeros((40, 60), np.uint8)
    pred[5:20, 30:50] = 7  # car, predicted only
    image = np.full((40, 60, 3), 100, np.uint8)
    picture = legend_panel(image, truth, pred, list(VOC_CLASSES), palette)
    assert picture.shape[1] == 3 * 60 + 2 * 4 and picture.shape[0] > 40 + SWATCH
    strip = picture[40:]
    for cls in (0, 7, 15):  # a full swatch of each present class
        hits = np.all(strip == palette[cls], axis=2)
        assert hits.sum() >= SWATCH * SWATCH, VOC_CLASSES[cls]
    assert np.all(strip == IGNORE_COLOUR, axis=2).sum() >= SWATCH * SWATCH  # the 255 row
    for cls in (1, 12):  # absent classes get no swatch
        assert not np.all(strip == palette[cls], axis=2).any()


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_training_logs_spread_panels_a_confusion_figure_and_hparams_beside_metrics(tmp_path):
    root = write_voc_tree(tmp_path / "VOC2012", {"train": 2, "val": 7})
    overrides = [
        *FAST_TRAIN,
        f"data.root={root}",
        "data.crop_size=32",
        "trainer.max_epochs=1",
        "data.batch_size=2",
    ]
    cfg = compose("train", [*overrides, "callbacks.panels.num_images=3"], tmp_path / "run")
    train(cfg)
    board = events(tmp_path / "run" / "tensorboard")
    images = set(board.Tags()["images"])
    panels = {t for t in images if t.startswith("val/prediction/")}
    assert panels == {f"val/prediction/val_{i:04d}" for i in (0, 3, 6)}
    assert "val/confusion_matrix" in images
    (figure,) = board.Images("val/confusion_matrix")
    assert (figure.width, figure.height) == (560, 560)
    scalars = board.Tags()["scalars"]
    assert "val/mIoU" in scalars and not [t for t in scalars if t.startswith("hp/")]
    content = board.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"val/mIoU", "val/pixel_acc"} <= metrics
    assert {h.name for h in experiment.hparam_infos} >= {"arch", "backbone", "lr"}


@pytest.mark.parametrize("count", [1, 5])
def test_a_single_position_is_the_first_image(count):
    assert panel_positions(1, count) == [0]


def test_a_tested_run_puts_its_test_scores_beside_val_and_names_what_to_run_next(tmp_path, capsys):
    """test=true: the summary waits for the test, then TensorBoard's hparams hold both."""
    root = write_voc_tree(tmp_path / "VOC2012", {"train": 2, "val": 2, "test": 2})
    overrides = [*FAST_TRAIN, f"data.root={root}", "data.crop_size=32", "trainer.max_epochs=1",
                 "data.batch_size=2", "test=true", "data.test_split=test"]  # fmt: skip
    metrics = train(compose("train", overrides, tmp_path / "run"))
    assert "test/mIoU" in metrics and "val/mIoU" in metrics
    content = events(tmp_path / "run" / "tensorboard").PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"val/mIoU", "test/mIoU"} <= tags
    printed = capsys.readouterr().out
    assert printed.count("Run directory:") == 1  # once, after the test
    assert printed.index("Next:") > printed.index("Best checkpoint:")

"""The training application end to end: configs, checkpoints, TensorBoard, resume, fine-tuning."""

import contextlib
import io
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree
from hydra.utils import instantiate

from seg.checkpoint import read_checkpoint
from seg.module import SegmentationModule
from train import build_module, build_trainer, train

GROUPS = {
    group: sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml") if p.stem != "default")
    for group in ("model", "data", "trainer", "callbacks", "logger")
}
EXPERIMENTS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))


def _options():
    for group, names in GROUPS.items():
        for name in names:
            yield [f"{group}={name}"]
    for name in EXPERIMENTS:
        yield [f"experiment={name}"]


@pytest.mark.parametrize("overrides", list(_options()), ids=lambda o: o[0])
def test_every_config_composes_and_instantiates(overrides, tmp_path):
    """Each option composes; trainer, callbacks and loggers instantiate without data or weights."""
    cfg = compose("train", overrides, tmp_path)
    assert cfg.model.arch in ("fcn32s", "fcn16s", "fcn8s", "unet")
    datamodule = instantiate(cfg.data)  # must not touch the files
    assert datamodule.num_classes == len(cfg.data.class_names)
    if cfg.trainer.get("accelerator") != "gpu" and cfg.trainer.get("devices") == 1:
        build_trainer(cfg)
    if cfg.model.backbone in ("tiny", "resnet18", "unet"):
        names = list(cfg.data.class_names)
        weights = cfg.model.class_weights  # a name is computed from the data's files by train.py
        weights = None if isinstance(weights, str) else weights
        module = instantiate(cfg.model, weights=None, num_classes=len(names), class_names=names,
                             class_weights=weights)  # fmt: skip
        assert module.hparams.arch == cfg.model.arch


PRINTED: dict[str, str] = {}  # what the module's runs printed


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """Two epochs on the shipped VOC sample with the tiny backbone; returns (cfg, metrics)."""
    out = tmp_path_factory.mktemp("run")
    cfg = compose("train", [*FAST_TRAIN, "data.crop_size=64", "data.batch_size=4"], out)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        metrics = train(cfg)
    PRINTED["sample_run"] = printed.getvalue()
    return cfg, metrics


def test_a_finished_run_names_its_best_checkpoint_and_what_to_run_next(sample_run):
    cfg, _ = sample_run
    (best,) = Path(cfg.paths.output_dir, "checkpoints").glob("best-*.ckpt")
    lines = PRINTED["sample_run"].splitlines()
    assert f"Run directory: {cfg.paths.output_dir}" in lines
    assert f"Best checkpoint: {best}" in lines
    assert lines[lines.index("Next:") + 1].startswith(f"  python evaluate.py ckpt_path={best} ")


def test_closing_lines_name_tensorboard_only_when_it_logs():
    from seg.report.finish import closing_lines

    assert "TensorBoard: tensorboard --logdir /r" in closing_lines("/r", "/r/best.ckpt", True)
    assert "TensorBoard" not in closing_lines("/r", "/r/best.ckpt", False)  # logger=csv


def test_last_checkpoint_follows_every_epoch_without_periodic_ones(tmp_path):
    cfg = compose(
        "train",
        [
            *FAST_TRAIN,
            "data.crop_size=32",
            "data.batch_size=5",
            "logger=csv",
            "callbacks.periodic.every_n_epochs=5",
        ],  # fmt: skip
        tmp_path,
    )
    train(cfg)
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints"
    assert not list(ckpt_dir.glob("periodic/*.ckpt"))  # 2 epochs < every 5
    last = read_checkpoint(ckpt_dir / "last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 2 * 2  # 10 images, batch 5: 2 steps


def test_checkpoints_round_trip_to_the_logged_metric(sample_run):
    cfg, metrics = sample_run
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints"
    best = sorted(ckpt_dir.glob("best-*.ckpt"))
    assert len(best) == 1 and (ckpt_dir / "last.ckpt").is_file()
    assert len(list((ckpt_dir / "periodic").glob("*.ckpt"))) == 2
    # weights_only loading, no Hydra: the checkpoint alone rebuilds the module.
    module = SegmentationModule.load_from_checkpoint(best[0], weights_only=True)
    datamodule = instantiate(cfg.data)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    (result,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    # Best and periodic checkpoints hold the weights, not the optimizer: last.ckpt holds both,
    # and the best score the `best` callback recorded.
    checkpoint, last = (torch.load(p, weights_only=True) for p in (best[0], ckpt_dir / "last.ckpt"))
    assert "optimizer_states" not in checkpoint and last["optimizer_states"]
    assert best[0].stat().st_size < 0.6 * (ckpt_dir / "last.ckpt").stat().st_size  # SGD momentum
    states = last["callbacks"].values()
    logged = next(s["best_model_score"] for s in states if s.get("monitor") == "val/mIoU")
    assert result["val/mIoU"] == pytest.approx(float(logged), abs=1e-6)
    assert 0 <= result["val/mIoU"] <= 1 and "val/pixel_acc" in result and "val/fwIoU" in result


def test_tensorboard_has_scalars_images_and_figures(sample_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, _ = sample_run
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"), size_guidance={})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "val/loss", "val/mIoU", "val/pixel_acc", "val/mean_acc", "val/fwIoU"):
        assert tag in tags["scalars"], tag
    assert any(t.startswith("val/iou/") for t in tags["scalars"])
    assert any(t.startswith("lr-") for t in tags["scalars"])
    assert any(t.startswith("val/prediction/") for t in tags["images"])  # tagged by image id
    assert "val/confusion_matrix" in tags["images"]
    assert len(events.Scalars("val/mIoU")) == 2  # once per epoch


def test_resolved_config_and_hparams_are_saved(sample_run):
    cfg, metrics = sample_run
    assert "val/mIoU" in metrics and "train/loss" in metrics
    hparams = Path(cfg.paths.output_dir) / "tensorboard" / "hparams.yaml"
    assert "arch: fcn8s" in hparams.read_text()


class Crash(pl.Callback):
    """Simulate a crash at the start of a given epoch (after the previous one was saved)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [
        *FAST_TRAIN,
        f"data.root={root}",
        "data.crop_size=32",
        "data.batch_size=2",
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "logger=csv",
    ]
    train(compose("train", common, tmp_path / "whole"))
    cfg = compose("train", common, tmp_path / "parts")
    trainer_cfg = cfg.trainer
    with pytest.raises(RuntimeError, match="simulated crash"):
        datamodule = instantiate(cfg.data)
        pl.seed_everything(cfg.seed, workers=True)
        module = build_module(cfg, datamodule)
        trainer = build_trainer(cfg)
        trainer.callbacks.append(Crash(epoch=2))
        trainer.fit(module, datamodule=datamodule)
    assert trainer_cfg.max_epochs == 4
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    cfg = compose("train", [*common, f"ckpt_path={last}"], tmp_path / "parts")
    train(cfg)
    whole = _weights(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    parts = _weights(last)
    assert whole.keys() == parts.keys()
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=0, atol=0, msg=key)


def test_init_from_copies_matching_tensors_and_reinitialises_the_head(tmp_path, caplog):
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 2}, num_classes=5)
    src = compose("train", [*FAST_TRAIN, "trainer.max_epochs=1", "logger=csv"], tmp_path / "a")
    train(src)  # 21 VOC classes on the shipped sample
    source = next((tmp_path / "a" / "checkpoints").glob("best-*.ckpt"))
    names = "[a,b,c,d,e]"
    cfg = compose(
        "train",
        [
            *FAST_TRAIN,
            f"data.root={root}",
            f"data.class_names={names}",
            "data.crop_size=32",
            "data.batch_size=2",
            f"init_from={source}",
            "trainer.max_epochs=1",
            "logger=csv",
        ],
        tmp_path / "b",
    )
    caplog.set_level("INFO", logger="seg")
    train(cfg)
    text = caplog.text
    assert "tensors copied" in text and "left as initialised" in text
    copied = text.split("tensors copied:")[1].split("\n")[0]
    kept = text.split("left as initialised (new or other shape):")[1].split("\n")[0]
    assert "backbone." in copied and "score" in kept


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_checkpoints_load_with_weights_only(experiment, tmp_path):
    """One step of each recipe (tiny backbone) writes a checkpoint that loads without Hydra."""
    root = write_voc_tree(tmp_path / "voc", {"train": 2, "val": 1}, num_classes=3)
    cfg = compose(
        "train",
        [
            f"experiment={experiment}",
            *FAST_TRAIN,
            f"data.root={root}",
            "data.crop_size=64",
            "data.batch_size=1",
            "data.class_names=[a,b,c]",
            "trainer.max_epochs=1",
            "trainer.max_steps=1",
            "logger=csv",
            "init_from=null",
            "model.weights_required=false",
            "trainer.devices=1",
            "trainer.strategy=auto",
            "trainer.precision=32-true",
            "test=false",
            "data.download=false",
            "data.val_split=val",
            "data.train_split=train",
            "model.compile=false",
        ],
        tmp_path / "run",
    )
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["arch"] == cfg.model.arch
    SegmentationModule.load_from_checkpoint(last, weights_only=True)

"""Two CPU processes (DDP on gloo) validate each image exactly once: the 1-process metrics."""

import csv
import os
import socket
import subprocess
import sys

import pytest
import pytorch_lightning as pl
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree
from hydra.utils import instantiate
from PIL import Image

from seg.checkpoint import read_checkpoint
from seg.module import SegmentationModule


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_validation_equals_one_process(tmp_path):
    """5 val images over 2 ranks: a padding sampler would count one twice and shift the scores."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 5}, size=(40, 56))
    first = root / "SegmentationClass" / "val_0000.png"  # the image a padding sampler repeats
    mask = Image.open(first)
    mask.paste(7, (0, 0, 28, 40))  # unlike the others: counting it twice changes every score
    mask.save(first)
    overrides = [*FAST_TRAIN, f"data.root={root}", "data.crop_size=32", "data.batch_size=2",
                 "trainer.max_epochs=1", "logger=csv", "~callbacks.progress"]  # fmt: skip
    out = tmp_path / "run"
    command = [sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", *overrides,
               "++trainer.enable_progress_bar=false", f"hydra.run.dir={out}"]  # fmt: skip
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in done.stderr + done.stdout  # two processes really ran
    (best,) = (out / "checkpoints").glob("best-*.ckpt")
    (path,) = (out / "csv").glob("version_*/metrics.csv")
    with open(path) as f:
        logged = next(row for row in csv.DictReader(f) if row.get("val/mIoU"))
    # One process, the same weights, every val image once.
    module = SegmentationModule.load_from_checkpoint(best, weights_only=True)
    datamodule = instantiate(compose("train", overrides, tmp_path / "one").data)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (expected,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    names = [k for k in expected if k.startswith("val/") and k != "val/loss"]
    assert {"val/mIoU", "val/pixel_acc", "val/fwIoU"} <= set(names)
    for name in names:
        assert float(logged[name]) == pytest.approx(expected[name], abs=1e-6), name
    states = read_checkpoint(out / "checkpoints" / "last.ckpt")["callbacks"].values()  # full
    score = next(s["best_model_score"] for s in states if s.get("monitor") == "val/mIoU")
    assert float(score) == pytest.approx(expected["val/mIoU"], abs=1e-6)

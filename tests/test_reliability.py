"""Interrupted runs resume exactly, checkpoints survive killed writers, bad input fails early."""

import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree
from hydra.errors import InstantiationException
from PIL import Image

from benchmarks import memory_growth
from evaluate import evaluate
from seg.checkpoint import AtomicCheckpointIO, read_checkpoint
from seg.checkpoint.guard import largest_weight
from seg.errors import (
    CheckpointError,
    ColourMaskError,
    ImageReadError,
    LabelRangeError,
    MaskSizeError,
    MissingFileError,
    RootNotFoundError,
    SplitError,
)
from seg.module import SegmentationModule
from train import build_trainer, train

# Seconds-long CPU runs: 8 train images in batches of 2 = 4 steps per epoch.
RUN = [
    *FAST_TRAIN,
    "data.crop_size=32",
    "data.batch_size=2",
    "trainer.deterministic=true",
    "logger=csv",
    "~callbacks.progress",
    "++trainer.enable_progress_bar=false",
    "callbacks.steps.every_n_train_steps=3",  # mid-epoch last.ckpt at steps 3, 6, 9, ...
    "model._target_=test_reliability.NoisySegmentationModule",  # draws random numbers
]


class NoisySegmentationModule(SegmentationModule):
    """Dropout on the logits: training draws from the global RNG, as VGG16's fc6/fc7 do."""

    def forward(self, images):
        return F.dropout(super().forward(images), 0.3, self.training)


class Crash(pl.Callback):
    """Raise before the training step ``step`` (a crash that loses everything in memory)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class Throttle(pl.Callback):
    """Sleep after each step so that a watching test can kill the run at a chosen point."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.4)


class Poison(pl.Callback):
    """Set a weight to NaN after step ``step``, as an overflow in the optimizer step would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")


def checkpoints(run: Path) -> dict[str, dict]:
    """Every checkpoint file of a run, by path relative to its checkpoints/ folder."""
    folder = run / "checkpoints"
    return {str(p.relative_to(folder)): read_checkpoint(p) for p in folder.rglob("*.ckpt")}


def assert_same_training_state(a: dict, b: dict) -> None:
    """Same step and weights; same optimizer momentum too where the files hold it (last.ckpt)."""
    assert a["global_step"] == b["global_step"]
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=0, atol=0)
    assert ("optimizer_states" in a) == ("optimizer_states" in b)
    if "optimizer_states" not in a:
        return  # best and periodic checkpoints hold weights only
    moments = [s["momentum_buffer"] for s in a["optimizer_states"][0]["state"].values()]
    resumed = [s["momentum_buffer"] for s in b["optimizer_states"][0]["state"].values()]
    for x, y in zip(moments, resumed, strict=True):
        torch.testing.assert_close(y, x, rtol=0, atol=0)


def test_mid_epoch_resume_is_exact(tmp_path):
    """Crash in epoch 2 after a step checkpoint; resuming from last.ckpt ends bit-exact."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [*RUN, f"data.root={root}", "trainer.max_epochs=2"]
    expected = train(compose("train", common, tmp_path / "whole"))
    crash = ["+callbacks.crash._target_=test_reliability.Crash", "+callbacks.crash.step=7"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose("train", [*common, *crash], tmp_path / "parts"))
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 6  # epoch 1, after 2 of its 4 batches
    resumed = train(compose("train", [*common, f"ckpt_path={last}"], tmp_path / "parts"))
    assert (
        resumed["val/mIoU"] == expected["val/mIoU"] and resumed["val/loss"] == expected["val/loss"]
    )
    whole, parts = checkpoints(tmp_path / "whole"), checkpoints(tmp_path / "parts")
    assert_same_training_state(whole["last.ckpt"], parts["last.ckpt"])
    assert parts.keys() == whole.keys()  # best, periodic and last: nothing missing or extra
    assert not list((tmp_path / "parts" / "checkpoints").rglob(".*.tmp"))  # no staging leftovers


KILLED_WRITER = """
import resource, shutil, signal, sys, torch
from pytorch_lightning.plugins.io import TorchCheckpointIO
from seg.checkpoint import AtomicCheckpointIO

kind, path = sys.argv[1:]
io = AtomicCheckpointIO() if kind == "atomic" else TorchCheckpointIO()
def checkpoint(step, size):
    weights = {"w": torch.full((size,), float(step))}
    facts = {"arch": "fcn8s", "backbone": "tiny", "num_classes": 2}
    return {"global_step": step, "state_dict": weights, "hyper_parameters": facts}
def limit():  # the kernel kills this process (SIGXFSZ) when a file it writes passes 1 MB
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
io.save_checkpoint(checkpoint(1, 1000), path)
if kind == "atomic":
    limit()
else:  # Lightning's default stages the file in $TMPDIR: die while it is moved over the target
    move = shutil.move
    shutil.move = lambda *args: (limit(), move(*args))
io.save_checkpoint(checkpoint(2, 4 << 20), path)  # 16 MB: killed after writing 1 MB
"""


@pytest.mark.parametrize("kind", ["atomic", "lightning"])
def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint(kind, tmp_path):
    """Ours keeps step 1 whole; Lightning's default, staged on another filesystem, tears it."""
    staging = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else tmp_path
    if kind == "lightning" and staging.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs $TMPDIR on another filesystem than the checkpoint (/dev/shm)")
    path = tmp_path / "last.ckpt"
    env = {**os.environ, "TMPDIR": str(staging)}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, kind, str(path)], cwd=REPO, env=env)
    subprocess.run(["rm", "-rf", str(staging)])
    assert done.returncode == -signal.SIGXFSZ  # killed in the middle of the second write
    if kind == "lightning":
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            read_checkpoint(path)
        return
    assert read_checkpoint(path)["global_step"] == 1
    leftover = tmp_path / ".last.ckpt.tmp"
    assert 0 < leftover.stat().st_size <= 1 << 20  # the torn write went to our temporary file
    AtomicCheckpointIO().save_checkpoint({**read_checkpoint(path), "global_step": 3}, path)
    assert read_checkpoint(path)["global_step"] == 3 and not leftover.exists()


def test_the_trainer_writes_and_reads_through_the_atomic_writer(tmp_path):
    trainer = build_trainer(compose("train", RUN, tmp_path))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.parametrize("lr", [5, 20])
def test_following_the_divergence_advice_trains_on(lr, tmp_path):
    """Diverge, resume from the checkpoint the message names with a 100x lower lr, train on.

    Weights grow tenfold within a step or two before the loss turns NaN; the last.ckpt written
    then is kept aside as last-healthy.ckpt, which is what the message names.
    """
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [*RUN, f"data.root={root}", "callbacks.steps.every_n_train_steps=2"]
    with pytest.raises(FloatingPointError) as error:
        train(compose("train", [*common, f"model.lr={lr}"], tmp_path / "run"))
    named = re.search(r"ckpt_path=(\S+) and a lower model.lr", str(error.value))
    if named:  # resume from the healthy checkpoint it names
        saved = read_checkpoint(named.group(1))
        guard = next(s for k, s in saved["callbacks"].items() if k.startswith("CheckpointGuard"))
        assert largest_weight(saved["state_dict"]) <= 10 * guard["reference"]
        resumed = [*common, f"model.lr={lr / 100}", f"ckpt_path={named.group(1)}"]
    else:  # no healthy checkpoint: it says to start again
        assert "start again with a lower model.lr" in str(error.value), str(error.value)
        shutil.rmtree(tmp_path / "run")
        resumed = [*common, f"model.lr={lr / 100}"]
    metrics = train(compose("train", resumed, tmp_path / "run"))
    assert math.isfinite(metrics["val/loss"])
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 8


def test_a_diverging_run_stops_and_resumes_with_a_lower_lr(tmp_path):
    """lr=100 explodes the weights by step 2: stop, keep last.ckpt finite; a resume with
    lr=0.01 applies and records the new lr."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    steps = "callbacks.steps.every_n_train_steps=1"  # a checkpoint after every step
    common = [*RUN, f"data.root={root}", steps]
    cfg = compose("train", [*common, "model.lr=100"], tmp_path / "run")
    with pytest.raises(FloatingPointError, match=r"diverged: .* by step \d") as error:
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    message = str(error.value)
    # step 1's weights are finite but already over 10x their start: not named for a resume
    assert "start again with a lower model.lr" in message and "\n" not in message, message
    saved = read_checkpoint(last)
    assert max(v.abs().max() for v in saved["state_dict"].values()) < 1000  # not exploded
    resumed = [*common, "model.lr=0.01", f"ckpt_path={last}"]
    metrics = train(compose("train", resumed, tmp_path / "run"))
    assert math.isfinite(metrics["val/loss"]) and read_checkpoint(last)["global_step"] == 8
    final = read_checkpoint(last)
    assert final["hyper_parameters"]["lr"] == 0.01  # recorded, and in effect:
    groups = final["optimizer_states"][0]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [0.01, 0.01]
    assert final["lr_schedulers"][0]["base_lrs"] == [0.01, 0.01]


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """Weights turned NaN by epoch 2's last step: its best/periodic/last saves are refused."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    poison = ["+callbacks.poison._target_=test_reliability.Poison", "+callbacks.poison.step=8"]
    cfg = compose("train", [*RUN, f"data.root={root}", *poison], tmp_path / "run")
    with pytest.raises(FloatingPointError, match="weights became non-finite .* by step 8"):
        train(cfg)
    saved = checkpoints(tmp_path / "run")
    assert all(finite(c) for c in saved.values())
    assert "best-epoch000-step000004.ckpt" in saved and saved["last.ckpt"]["global_step"] == 6


def finite(checkpoint: dict) -> bool:
    state = checkpoint["state_dict"].values()
    return all(v.isfinite().all() for v in state if v.is_floating_point())


class Payload:
    """Unpickling this calls open(path, "w"): a checkpoint that would run code when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def break_data(root: Path, case: str) -> str:
    """Damage a generated VOC tree as ``case`` says; return the path the error must name."""
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    if case == "root missing":
        return str(root / "missing")
    if case == "split file missing":
        split.unlink()
    elif case == "split file empty":
        split.write_text("\n")
    elif case == "image missing":
        (images / "train_0001.jpg").unlink()
        return "train_0001.jpg"
    elif case == "truncated JPEG":
        data = (images / "train_0002.jpg").read_bytes()
        (images / "train_0002.jpg").write_bytes(data[: len(data) // 2])
        return "train_0002.jpg"
    else:
        mask = Image.open(masks / "val_0001.png")
        if case == "RGB mask":
            mask = mask.convert("RGB")
        elif case == "mask size mismatch":
            mask = mask.resize((mask.width + 4, mask.height))
        elif case == "label out of range":
            mask = Image.fromarray(np.full((mask.height, mask.width), 40, np.uint8))
        mask.save(masks / "val_0001.png")
        return "val_0001.png"
    return str(split)


DATA_ERRORS = {
    "root missing": RootNotFoundError,
    "split file missing": SplitError,
    "split file empty": SplitError,
    "image missing": MissingFileError,
    "truncated JPEG": ImageReadError,
    "RGB mask": ColourMaskError,
    "mask size mismatch": MaskSizeError,
    "label out of range": LabelRangeError,
}


def bad_input(case: str, tmp_path: Path) -> tuple[list[str], type, str]:
    """Overrides that make train(cfg) meet bad input ``case``, the error and what it names."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    if case in DATA_ERRORS:
        named = break_data(root, case)
        return (
            [f"data.root={root / 'missing' if case == 'root missing' else root}"],
            DATA_ERRORS[case],
            named,
        )
    if case in ("unknown arch", "unknown backbone"):
        key, value = ("arch", "fcn4s") if case == "unknown arch" else ("backbone", "vgg99")
        return [f"data.root={root}", f"model.{key}={value}"], ValueError, "choose one of"
    path = tmp_path / f"{case.replace(' ', '_')}.ckpt"
    if case == "checkpoint of another program":
        torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, path)
    else:  # a checkpoint whose pickle would run code
        state = {
            "state_dict": {},
            "hyper_parameters": {"arch": "fcn8s", "x": Payload(tmp_path / "ran")},
        }
        torch.save(state, path)
    return [f"data.root={root}", f"ckpt_path={path}"], CheckpointError, str(path)


BAD_INPUT = [*DATA_ERRORS, "unknown arch", "unknown backbone", "checkpoint of another program",
             "checkpoint that runs code"]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_in_one_paragraph_before_anything_runs(case, tmp_path):
    overrides, error, named = bad_input(case, tmp_path)
    run = tmp_path / "run"
    previous = run / "checkpoints" / "last.ckpt"  # an earlier run's checkpoint must survive
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"earlier checkpoint")
    cfg = compose("train", [*RUN, *overrides], run)
    with pytest.raises((error, InstantiationException)) as raised:
        train(cfg)
    found = raised.value
    if isinstance(found, InstantiationException):  # Hydra's wrapper, from build_module
        found = found.__cause__
    assert isinstance(found, error)
    message = str(found)
    assert named in message and "\n" not in message and len(message) < 600, message
    assert [p.name for p in previous.parent.rglob("*")] == ["last.ckpt"]
    assert previous.read_bytes() == b"earlier checkpoint"
    assert not list((run / "csv").glob("version_*/metrics.csv"))  # not one step ran
    assert not (tmp_path / "ran").exists()


def test_every_loader_refuses_a_checkpoint_whose_pickle_runs_code(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 2, "val": 1})
    ran = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"arch": "fcn8s", "x": Payload(ran)}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        SegmentationModule.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        evaluate(compose("eval", [f"ckpt_path={path}", f"data.root={root}"], tmp_path / "eval"))
    with pytest.raises(CheckpointError, match="refused"):
        train(compose("train", [*RUN, f"data.root={root}", f"init_from={path}"], tmp_path / "run"))
    assert not ran.exists()
    torch.load(path, weights_only=False)  # what the refusals prevent
    assert ran.exists()


def train_py(out: Path, *overrides: str) -> list[str]:
    """The command line of a real ``python train.py`` run writing to ``out``."""
    return [sys.executable, "train.py", *RUN, *overrides, f"hydra.run.dir={out}"]


@pytest.mark.slow  # three train.py processes: about 70 s; the fast variant is the one above
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL train.py in epoch 2 once a step checkpoint exists; resume; compare every file."""
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [f"data.root={root}", "trainer.max_epochs=2", "data.num_workers=2",
              "data.persistent_workers=true"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}  # test_reliability's callbacks
    run = dict(cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(train_py(tmp_path / "whole", *common), timeout=300, **run)
    assert done.returncode == 0, done.stderr[-3000:]
    throttle = "+callbacks.throttle._target_=test_reliability.Throttle"
    child = subprocess.Popen(train_py(tmp_path / "parts", *common, throttle), **run)
    last, step, deadline = tmp_path / "parts" / "checkpoints" / "last.ckpt", 0, time.time() + 300
    # Kill once last.ckpt is a step checkpoint inside epoch 2 (4 steps per epoch).
    while not (step > 4 and step % 4) and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        step = read_checkpoint(last)["global_step"] if last.exists() else 0  # never torn
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, child.stderr.read()[-3000:]
    assert read_checkpoint(last)["global_step"] == 6  # killed in epoch 1, after 2 of 4 batches
    done = subprocess.run(train_py(tmp_path / "parts", *common, f"ckpt_path={last}"), **run)
    assert done.returncode == 0, done.stderr[-3000:]
    whole, parts = checkpoints(tmp_path / "whole"), checkpoints(tmp_path / "parts")
    assert whole.keys() == parts.keys()
    for name in whole:
        assert_same_training_state(whole[name], parts[name])
    assert best_score(parts["last.ckpt"]) == best_score(whole["last.ckpt"])  # same val/mIoU


def best_score(checkpoint: dict) -> float:
    """The best val/mIoU recorded by the `best` ModelCheckpoint in a checkpoint."""
    states = checkpoint["callbacks"].values()
    return next(float(s["best_model_score"]) for s in states if s.get("monitor") == "val/mIoU")


def test_memory_growth_benchmark_prints_memory_per_epoch(tmp_path, capsys):
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 1})
    out = tmp_path / "memory.json"
    tiny = ["model.backbone=tiny", "model.weights=null", "data.crop_size=32", "data.batch_size=2",
            "data.num_workers=1", "logger=csv"]  # fmt: skip
    memory_growth.main(
        ["--root", str(root), "--epochs", "2", "--out", str(out), "--override", *tiny]
    )
    assert (
        "| epoch | seconds | main RSS MiB | main PSS MiB | workers PSS MiB |"
        in capsys.readouterr().out
    )
    rows = json.loads(out.read_text())["tables"]["RSS after each epoch"]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["main RSS MiB"] > 100 and row["workers PSS MiB"] > 0 for row in rows)

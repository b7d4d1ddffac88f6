"""A run interrupted at any boundary and resumed ends exactly as an uninterrupted one.

Runs stop by epochs (``max_epochs``) or by steps (``max_steps``): Lightning restores its loops
differently for the two, and under ``max_steps`` an epoch-end checkpoint once resumed with the
next epoch's sampler order. Signals (SIGTERM, SIGINT, SIGKILL) are sent to a real ``train.py``.

The network applies dropout while training, so every step draws random numbers: a resume that
restores weights, optimizer and loader position but not the random-number states diverges at
once. Boundaries: mid-epoch (a step checkpoint), end of epoch (the checkpoint written after
validation) and during validation (the step checkpoint written after an epoch's last batch,
before its validation ran); each with 0 and 2 loader workers. Runs go through ``train(cfg)``.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree

from seg.checkpoint import read_checkpoint
from seg.module import SegmentationModule
from train import train

# 8 train images in batches of 2: 4 steps per epoch, 2 epochs; last.ckpt every 2 steps and
# after each epoch's validation.
RUN = [
    *FAST_TRAIN,
    "data.crop_size=32",
    "data.batch_size=2",
    "trainer.deterministic=true",
    "logger=csv",
    "~callbacks.progress",
    "++trainer.enable_progress_bar=false",
    "callbacks.steps.every_n_train_steps=2",
    "model._target_=test_resume_boundaries.DropoutSegmentationModule",
]


class DropoutSegmentationModule(SegmentationModule):
    """Dropout on the logits while training: every step draws from torch's global RNG."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.dropout(super().forward(images), 0.3, self.training)


class Crash(pl.Callback):
    """Raise at ``global_step == step`` in the training or the validation ``stage``."""

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step = stage, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.stage == "train" and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.stage == "validation" and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class Signal(pl.Callback):
    """Send ``signum`` at ``global_step == step`` in the training or validation ``stage``: SIGINT
    to the process group, as Ctrl+C in a terminal does, other signals to the main process."""

    def __init__(self, stage: str, step: int, signum: int) -> None:
        self.stage, self.step, self.signum = stage, step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.stage == "train" and trainer.global_step == self.step:
            self.send()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.stage == "validation" and trainer.global_step == self.step:
            self.send()

    def send(self) -> None:
        if self.signum == signal.SIGINT:  # Ctrl+C: the whole group, loader workers included
            os.killpg(os.getpgid(0), self.signum)
        else:  # a scheduler's or kill's SIGTERM, and SIGKILL: the main process
            os.kill(os.getpid(), self.signum)


# boundary: (crash stage, crash step, last.ckpt's step, whether validation had run before it)
BOUNDARIES = {
    "mid-epoch": ("train", 7, 6, True),  # epoch 1 after 2 of 4 batches
    "end-of-epoch": ("train", 4, 4, True),  # epoch 0 done and validated
    "during-validation": ("validation", 4, 4, False),  # epoch 0 trained, not yet validated
    # epoch 1 after 1 of 4 batches, with no step checkpoint since the epoch-end one
    "mid-epoch-after-epoch-end": ("train", 5, 4, True),
}
STOPS = {"epochs": [], "steps": ["trainer.max_steps=8", "trainer.max_epochs=-1"]}


def options(root: Path, workers: int, stop: str = "epochs") -> list[str]:
    persistent = "true" if workers else "false"
    return [*RUN, f"data.root={root}", f"data.num_workers={workers}",
            f"data.persistent_workers={persistent}", *STOPS[stop]]  # fmt: skip


def validated(checkpoint: dict) -> bool:
    """Whether the best-checkpoint callback had seen a val/mIoU when this was written."""
    states = checkpoint["callbacks"].values()
    return any(s.get("monitor") == "val/mIoU" and s["best_model_score"] is not None for s in states)


def assert_same_state(a: dict, b: dict) -> None:
    """Same step, bit-identical weights and momentum buffers."""
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0)
    states = zip(a["optimizer_states"][0]["state"].values(),
                 b["optimizer_states"][0]["state"].values(), strict=True)  # fmt: skip
    for x, y in states:
        torch.testing.assert_close(y["momentum_buffer"], x["momentum_buffer"], rtol=0, atol=0)


@pytest.fixture(scope="module")
def whole_runs(tmp_path_factory) -> dict:
    """Uninterrupted runs, one per worker count, made once for this file."""
    root = write_voc_tree(tmp_path_factory.mktemp("voc"), {"train": 8, "val": 2})
    runs = {}

    def run(workers: int, stop: str = "epochs") -> tuple[Path, dict, dict]:
        if (workers, stop) not in runs:
            out = tmp_path_factory.mktemp(f"whole{workers}{stop}")
            metrics = train(compose("train", options(root, workers, stop), out))
            last = read_checkpoint(out / "checkpoints" / "last.ckpt")
            runs[workers, stop] = (root, metrics, last)
        return runs[workers, stop]

    return run


def resume_after_crash(
    boundary: str, workers: int, whole_runs, tmp_path: Path, stop: str = "epochs"
) -> None:
    root, expected, whole_last = whole_runs(workers, stop)
    stage, step, saved_step, was_validated = BOUNDARIES[boundary]
    common = options(root, workers, stop)
    crash = ["+callbacks.crash._target_=test_resume_boundaries.Crash",
             f"+callbacks.crash.stage={stage}", f"+callbacks.crash.step={step}"]  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose("train", [*common, *crash], tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(last)
    assert (checkpoint["global_step"], validated(checkpoint)) == (saved_step, was_validated)
    resumed = train(compose("train", [*common, f"ckpt_path={last}"], tmp_path))
    assert_same_state(whole_last, read_checkpoint(last))
    assert resumed["val/mIoU"] == expected["val/mIoU"]
    assert resumed["val/loss"] == expected["val/loss"]


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_resume_is_exact_at_every_boundary(boundary, stop, whole_runs, tmp_path):
    resume_after_crash(boundary, 0, whole_runs, tmp_path, stop)


@pytest.mark.slow  # worker processes start for every run: about 3x the time
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_resume_is_exact_at_every_boundary_with_two_workers(boundary, whole_runs, tmp_path):
    resume_after_crash(boundary, 2, whole_runs, tmp_path, "steps")


# signal: (stage it arrives in, step, exit status, last.ckpt's step)
SIGNALS = {
    # honoured at the end of the step it arrives in: last.ckpt is written there
    "SIGTERM": ("train", 5, 143, 6),
    "SIGINT": ("train", 5, 130, 6),
    # honoured after the validation it arrives in, at the next step's end
    "SIGTERM-during-validation": ("validation", 4, 143, 5),
    # no chance to write: the epoch-end last.ckpt is what remains
    "SIGKILL": ("train", 5, -signal.SIGKILL, 4),
}


def start_signalled(name: str, workers: int, root: Path, out: Path) -> subprocess.Popen:
    """A real ``train.py`` in its own process group that sends itself ``name`` at its step."""
    stage, step, _, _ = SIGNALS[name]
    signum = getattr(signal, name.split("-")[0])
    hook = ["+callbacks.signal._target_=test_resume_boundaries.Signal",
            f"+callbacks.signal.stage={stage}", f"+callbacks.signal.step={step}",
            f"+callbacks.signal.signum={int(signum)}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    command = [sys.executable, "train.py", *options(root, workers, "steps"), *hook,
               f"hydra.run.dir={out}"]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stderr.txt", "w") as stderr:  # a file: no pipe to fill while it runs
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)  # fmt: skip


def resume_signalled(name: str, workers: int, run: subprocess.Popen, whole_runs, out: Path):
    """The signalled run stopped as SIGNALS says, and its resume ends as the whole run did."""
    root, expected, whole_last = whole_runs(workers, "steps")
    _, _, status, saved_step = SIGNALS[name]
    returncode, stderr = run.wait(timeout=300), (out / "stderr.txt").read_text()
    assert returncode == status, stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    if name != "SIGKILL":
        assert "Traceback" not in stderr
        assert "Resume with:\n  python train.py " in stderr
        assert stderr.rstrip().endswith(f"ckpt_path={last}")
    assert read_checkpoint(last)["global_step"] == saved_step
    common = options(root, workers, "steps")
    resumed = train(compose("train", [*common, f"ckpt_path={last}"], out))
    assert resumed["val/mIoU"] == expected["val/mIoU"]
    assert_same_state(whole_last, read_checkpoint(last))


@pytest.fixture(scope="module")
def signalled(whole_runs, tmp_path_factory) -> dict:
    """The four signalled runs (loader in the main process), started together: each is mostly
    Python starting up, so together they take little more than one."""
    root = whole_runs(0, "steps")[0]
    outs = {name: tmp_path_factory.mktemp("signalled") for name in SIGNALS}
    runs = {name: (start_signalled(name, 0, root, out), out) for name, out in outs.items()}
    yield runs
    for run, _ in runs.values():
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_stops_cleanly_and_the_resume_is_exact(name, signalled, whole_runs):
    run, out = signalled[name]
    resume_signalled(name, 0, run, whole_runs, out)


@pytest.mark.slow  # worker processes start for every run
@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_stops_cleanly_and_the_resume_is_exact_with_two_workers(
    name, whole_runs, tmp_path
):
    root = whole_runs(2, "steps")[0]
    resume_signalled(name, 2, start_signalled(name, 2, root, tmp_path), whole_runs, tmp_path)

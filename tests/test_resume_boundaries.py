"""A run interrupted at any boundary and resumed ends exactly as an uninterrupted one.

The network applies dropout while training, so every step draws random numbers: a resume that
restores weights, optimizer and loader position but not the random-number states diverges at
once. Boundaries: mid-epoch (a step checkpoint), end of epoch (the checkpoint written after
validation) and during validation (the step checkpoint written after an epoch's last batch,
before its validation ran); each with 0 and 2 loader workers. Runs go through ``train(cfg)``.
"""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import FAST_TRAIN, compose, write_voc_tree

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


# boundary: (crash stage, crash step, last.ckpt's step, whether validation had run before it)
BOUNDARIES = {
    "mid-epoch": ("train", 7, 6, True),  # epoch 1 after 2 of 4 batches
    "end-of-epoch": ("train", 4, 4, True),  # epoch 0 done and validated
    "during-validation": ("validation", 4, 4, False),  # epoch 0 trained, not yet validated
}


def options(root: Path, workers: int) -> list[str]:
    persistent = "true" if workers else "false"
    return [*RUN, f"data.root={root}", f"data.num_workers={workers}",
            f"data.persistent_workers={persistent}"]  # fmt: skip


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

    def run(workers: int) -> tuple[Path, dict, dict]:
        if workers not in runs:
            out = tmp_path_factory.mktemp(f"whole{workers}")
            metrics = train(compose("train", options(root, workers), out))
            runs[workers] = (root, metrics, read_checkpoint(out / "checkpoints" / "last.ckpt"))
        return runs[workers]

    return run


def resume_after_crash(boundary: str, workers: int, whole_runs, tmp_path: Path) -> None:
    root, expected, whole_last = whole_runs(workers)
    stage, step, saved_step, was_validated = BOUNDARIES[boundary]
    common = options(root, workers)
    crash = ["+callbacks.crash._target_=test_resume_boundaries.Crash",
             f"+callbacks.crash.stage={stage}", f"+callbacks.crash.step={step}"]  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose("train", [*common, *crash], tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(last)
    assert (checkpoint["global_step"], validated(checkpoint)) == (saved_step, was_validated)
    resumed = train(compose("train", [*common, f"ckpt_path={last}"], tmp_path))
    assert resumed["val/mIoU"] == expected["val/mIoU"]
    assert resumed["val/loss"] == expected["val/loss"]
    assert_same_state(whole_last, read_checkpoint(last))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_resume_is_exact_at_every_boundary(boundary, whole_runs, tmp_path):
    resume_after_crash(boundary, 0, whole_runs, tmp_path)


@pytest.mark.slow  # worker processes start for every run: about 3x the time
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_resume_is_exact_at_every_boundary_with_two_workers(boundary, whole_runs, tmp_path):
    resume_after_crash(boundary, 2, whole_runs, tmp_path)

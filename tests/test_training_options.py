"""Training options: EMA, early stopping, effective batch size, a wall-clock budget."""

import json
import os
import socket
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree

from seg import training
from seg.checkpoint import read_checkpoint
from seg.errors import ConfigError
from seg.module import SegmentationModule
from seg.training import accumulation, parse_duration, validations
from train import build_datamodule, build_trainer, train

# 8 train images in batches of 2: 4 steps per epoch, seconds per run.
RUN = [
    *FAST_TRAIN, "data.crop_size=32", "data.batch_size=2", "trainer.deterministic=true",
    "logger=csv", "~callbacks.progress", "++trainer.enable_progress_bar=false",
    "callbacks.steps.every_n_train_steps=3", "model.optimizer=adamw", "model.lr=0.01",
]  # fmt: skip
EMA = ["callbacks=[default,ema]", "callbacks.ema.decay=0.5"]


class Clock:
    """A fake ``time.monotonic`` for the budget: one second per training step (``Tick``)."""

    now = 1000.0

    @staticmethod
    def monotonic() -> float:
        return Clock.now


class Tick(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        Clock.now += 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, name: str, overrides: list[str]) -> dict:
    return train(compose("train", [*RUN, *overrides], tmp_path / name))


def test_ema_validates_and_checkpoints_the_average_and_resumes_bit_exact(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [*EMA, f"data.root={root}", "trainer.max_epochs=2"]
    whole = run(tmp_path, "whole", common)
    crash = ["+callbacks.crash._target_=test_reliability.Crash", "+callbacks.crash.step=7"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, "parts", [*common, *crash])
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 6  # mid-epoch
    resumed = run(tmp_path, "parts", [*common, f"ckpt_path={last}"])
    assert resumed["val/mIoU"] == whole["val/mIoU"]
    a = read_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(last)
    for key in ("state_dict", "averaging_state"):  # the average and its update count
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            torch.testing.assert_close(b[key][name], a[key][name], rtol=0, atol=0)
    # The current weights' path: AdamW's moments hold every gradient of the run. (The weights
    # themselves are the average at the end of training: Lightning copies it over them.)
    states = [c["optimizer_states"][0]["state"].values() for c in (a, b)]
    for x, y in zip(*states, strict=True):
        torch.testing.assert_close(y["exp_avg"], x["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(y["exp_avg_sq"], x["exp_avg_sq"], rtol=0, atol=0)
    averaged, current = a["state_dict"], a["current_model_state"]
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged)  # EMA really on
    # The best checkpoint holds the average, and scoring it again gives the logged val/mIoU.
    (best,) = (tmp_path / "whole" / "checkpoints").glob("best-*.ckpt")
    module = SegmentationModule.load_from_checkpoint(best, weights_only=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    cfg = compose("train", [*RUN, *common], tmp_path / "eval")
    (scored,) = trainer.validate(module, datamodule=build_datamodule(cfg), verbose=False)
    states = a["callbacks"].values()  # best checkpoints hold weights only
    logged = next(s["best_model_score"] for s in states if s.get("monitor") == "val/mIoU")
    assert scored["val/mIoU"] == pytest.approx(float(logged), abs=1e-6)


def test_early_stopping_stops_when_val_miou_stops_improving(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 2})
    run(tmp_path, "run", [
        f"data.root={root}", "callbacks=[default,early_stopping]",
        "callbacks.early_stopping.patience=1", "trainer.max_epochs=10",
        "callbacks.early_stopping.min_delta=1.0",
    ])  # fmt: skip
    # An mIoU gain of 1.0 is impossible: epoch 0 sets the best, epoch 1 cannot beat it by that
    # much, so training ends after 2 epochs.
    last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, 4)


def test_accumulation_from_effective_batch_devices_and_nodes():
    assert accumulation(16, 2, devices=1) == 8
    assert accumulation(16, 2, devices=2) == 4
    assert accumulation(64, 4, devices=4, nodes=2) == 2
    with pytest.raises(ValueError, match=r"effective_batch_size=12 .*\(4\) x devices \(2\)"):
        accumulation(12, 4, devices=2)


@pytest.mark.parametrize(("processes", "expected"), [(1, 4), (2, 2)])
def test_effective_batch_size_sets_the_trainers_accumulation(processes, expected, tmp_path):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={processes}"]
    cfg = compose("train", [*RUN, *ddp, "+data.effective_batch_size=8"], tmp_path)
    assert build_trainer(cfg).accumulate_grad_batches == expected


def test_effective_batch_size_trains_with_fewer_optimizer_steps(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    run(tmp_path, "run", [f"data.root={root}", "+data.effective_batch_size=4"])
    last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4  # 2 epochs x 4 batches / 2 accumulated


def test_parse_duration():
    assert [parse_duration(t) for t in ("90s", "20m", "1.5h", "45", 30)] == [90, 1200, 5400, 45, 30]
    with pytest.raises(ValueError, match="trainer.budget='20 minutes'.*s, m or h"):
        parse_duration("20 minutes")


def test_plan_arithmetic_validations_and_rounding():
    assert [validations(n, 8) for n in (7, 8, 9, 16, 17)] == [1, 1, 2, 2, 3]


def test_budget_fixes_the_steps_after_the_warm_up_and_a_rerun_repeats_them(tmp_path, monkeypatch):
    """A fake clock: 1 s per step, 2 s per validation, a 30 s budget -> 20 steps.

    The warm-up's steps are timed (steps 4-9: 1 s each); 21 s are left after step 9, and 19 more
    steps with the final validation fill them exactly: 28 steps, rounded down to 20. The run
    validates its last step (check_val_every_n_epoch=1000 would not), a crash and resume ends
    identically, and the same run given trainer.max_steps=20 repeats it bit for bit.
    """
    monkeypatch.setattr(training, "time", Clock)
    monkeypatch.setattr(training, "validation_seconds", lambda trainer, module: 2.0)
    Clock.now = 1000.0
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    common = [
        f"data.root={root}", "trainer.budget=30s", "trainer.check_val_every_n_epoch=1000",
        "model.warmup_iters=10", "callbacks.steps.every_n_train_steps=1",
        "+callbacks.tick._target_=test_training_options.Tick",
    ]  # fmt: skip
    whole = run(tmp_path, "whole", common)
    plan = json.loads((tmp_path / "whole" / "budget.json").read_text())
    assert (plan["steps"], plan["seconds_per_step"], plan["validations"]) == (20, 1.0, 1)
    assert plan["seconds_taken"] == 20.0  # 20 steps of one fake second, recorded at the end
    assert "val/mIoU" in whole
    last_whole = read_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    assert last_whole["global_step"] == 20
    assert last_whole["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0  # decayed to 0

    crash = ["+callbacks.crash._target_=test_reliability.Crash", "+callbacks.crash.step=15"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, "parts", [*common, *crash])
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    lr = read_checkpoint(last)["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.01 * (1 - 15 / 20) ** 0.9)  # poly over the planned 20 steps
    resumed = run(tmp_path, "parts", [*common, f"ckpt_path={last}"])
    again = run(tmp_path, "again", [*common, "trainer.max_steps=20"])
    # a resumed run's clock started again, and a rerun of a plan only records: no seconds taken
    assert "seconds_taken" not in json.loads((tmp_path / "parts" / "budget.json").read_text())
    for other, metrics in (
        (last, resumed),
        (tmp_path / "again" / "checkpoints" / "last.ckpt", again),
    ):
        state = read_checkpoint(other)
        assert state["global_step"] == 20
        for key, value in last_whole["state_dict"].items():
            torch.testing.assert_close(
                state["state_dict"][key], value, rtol=0, atol=0, msg=str(other)
            )
        assert metrics["val/mIoU"] == whole["val/mIoU"]


def test_budget_needs_a_warm_up_to_time(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    with pytest.raises(ConfigError, match="model.warmup_iters=0; set it to at least 10"):
        run(tmp_path, "run", [f"data.root={root}", "trainer.budget=30s"])


@pytest.mark.slow  # two gloo processes in a subprocess: about 20 s idle
def test_effective_batch_size_under_two_processes_takes_the_same_steps(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 8, "val": 2})
    out = tmp_path / "run"
    command = [sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", *RUN,
               f"data.root={root}", "+data.effective_batch_size=8",
               f"hydra.run.dir={out}"]  # fmt: skip
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in done.stderr + done.stdout
    # 8 images / 2 processes / batch 2 = 2 batches per epoch, accumulated into 1 step of 8.
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == 2

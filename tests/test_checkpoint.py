"""The checkpoint lifecycle's small parts: the run lock, partial-write clean-up, the guard."""

import math
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree
from hydra.utils import instantiate

from seg.checkpoint import CheckpointGuard, LastCheckpoint, RunLock, remove_partial_writes
from seg.errors import RunDirectoryError
from train import build_module

# Takes the lock, forks a child that outlives it (as loader workers do), then is killed -9.
KILLED_WITH_A_CHILD = """
import os, signal, sys, time
from seg.checkpoint import RunLock
lock = RunLock(sys.argv[1]).__enter__()  # held (a reference kept) until the kill
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
open(sys.argv[2], "w").write(str(child))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_second_writer_is_refused_until_the_first_releases(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunDirectoryError, match=r"run is in use by pid \d+ on "):
            RunLock(tmp_path / "run").__enter__()
    with RunLock(tmp_path / "run"):  # released on exit: the directory is free again
        pass


def test_a_killed_runs_lock_is_free_at_once_though_its_workers_live_on(tmp_path):
    run, pid_file = tmp_path / "run", tmp_path / "child.pid"
    args = [sys.executable, "-c", KILLED_WITH_A_CHILD, str(run), str(pid_file)]
    done = subprocess.run(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert done.returncode == -signal.SIGKILL
    child = int(pid_file.read_text())
    try:
        os.kill(child, 0)  # the child is still alive
        with RunLock(run):  # and the lock is free all the same
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_lock_file_left_by_a_dead_run_is_not_in_the_way(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("pid 999999 on a-host-that-crashed\n")
    with RunLock(tmp_path / "run"):  # no lock is held on it: the owner is gone
        assert (tmp_path / "run" / ".lock").read_text().startswith("pid ")


def test_taking_the_lock_removes_partial_checkpoints_and_keeps_whole_ones(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    (folder / "periodic").mkdir(parents=True)
    partial = [folder / ".last.ckpt.tmp", folder / "periodic" / ".epoch004.ckpt.tmp"]
    for path in [*partial, folder / "last.ckpt"]:
        path.write_bytes(b"x")
    with RunLock(tmp_path / "run"):
        assert [p.exists() for p in partial] == [False, False]
        assert (folder / "last.ckpt").read_bytes() == b"x"
    assert remove_partial_writes(tmp_path / "absent") == []


def test_the_guard_refuses_exploded_weights_and_clears_the_weights_source():
    guard = CheckpointGuard(max_growth=1000)
    guard.reference = 2.0
    ok = {"state_dict": {"w": torch.full((3,), 1999.0)}, "hyper_parameters": {"weights": "x"}}
    guard.check(ok)
    assert ok["hyper_parameters"]["weights"] is None  # rebuilt offline from the file alone
    statistics = {"bn.running_var": torch.full((3,), 1e9), "w": torch.ones(3)}
    guard.check({"state_dict": statistics, "global_step": 5})  # statistics are not weights
    for value, said in ((2001.0, r"largest weight grew to 2e\+03"), (math.nan, "non-finite")):
        bad = {"state_dict": {"w": torch.full((3,), value)}, "global_step": 7, "epoch": 1}
        with pytest.raises(FloatingPointError, match=f"{said}.* by step 7 \\(epoch 1\\)"):
            guard.check(bad)


def test_class_weights_from_the_command_line_are_a_plain_list(tmp_path):
    root = write_voc_tree(tmp_path / "voc", {"train": 2, "val": 1})
    weights = [float(i % 3 + 1) for i in range(21)]
    overrides = [*FAST_TRAIN, f"data.root={root}", f"model.class_weights={weights}"]
    cfg = compose("train", overrides, tmp_path / "run")
    module = build_module(cfg, instantiate(cfg.data))
    assert module.hparams.class_weights == weights and type(module.hparams.class_weights) is list
    assert module.class_weight.tolist() == weights


def test_a_stop_for_a_nan_loss_names_the_checkpoint_to_resume_from(tmp_path):
    folder = tmp_path / "checkpoints"
    guard = CheckpointGuard()
    guard.trainer = SimpleNamespace(callbacks=[LastCheckpoint(str(folder))])
    error = FloatingPointError("the training loss became nan at step 9")
    guard.on_exception(guard.trainer, None, error)
    assert str(error).endswith("start again with a lower model.lr.")  # nothing written yet
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"x")
    error = FloatingPointError("the training loss became nan at step 9")
    guard.on_exception(guard.trainer, None, error)
    assert str(error) == (
        f"the training loss became nan at step 9 Resume with "
        f"ckpt_path={folder / 'last.ckpt'} and a lower model.lr."
    )


def test_a_healthy_last_checkpoint_is_kept_aside_from_exploding_weights(tmp_path):
    """last.ckpt with weights over 10x their start moves the healthy one to last-healthy.ckpt,
    which the divergence advice then names; a healthy last.ckpt again removes it."""
    guard = CheckpointGuard()
    guard.reference = 1.0
    last, kept = tmp_path / "last.ckpt", tmp_path / "last-healthy.ckpt"

    def write(largest: float, step: int) -> None:
        checkpoint = {"state_dict": {"w": torch.tensor([largest])}, "global_step": step}
        guard.check(checkpoint, str(last))
        torch.save(checkpoint, last)

    write(2.0, 1)
    write(50.0, 2)  # growing fast: step 1's file is kept
    assert torch.load(kept)["global_step"] == 1 and torch.load(last)["global_step"] == 2
    write(80.0, 3)  # still unhealthy: the kept file stays step 1's
    assert torch.load(kept)["global_step"] == 1
    trainer = SimpleNamespace(callbacks=[LastCheckpoint(str(tmp_path))])
    guard.trainer = trainer
    assert guard.resume_hint() == f"Resume with ckpt_path={kept} and a lower model.lr."
    write(3.0, 4)  # healthy again: newer than the kept one, which goes
    assert not kept.exists() and guard.resume_hint().startswith(f"Resume with ckpt_path={last}")

"""Trackers and sweeps, offline: MLflow read back, W&B's offline run, two Optuna trials."""

import csv
import importlib
import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import FAST_TRAIN, REPO, compose, write_voc_tree

from train import train


def need(module: str):
    """The optional package (the track extra); skip without it, fail under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def test_mlflow_run_reads_back_metrics_params_and_checkpoint(tmp_path):
    mlflow = need("mlflow")
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 2})
    out = tmp_path / "run"
    overrides = [*FAST_TRAIN, f"data.root={root}", "data.crop_size=32", "data.batch_size=2",
                 "logger=mlflow", "~callbacks.progress",
                 "++trainer.enable_progress_bar=false"]  # fmt: skip
    metrics = train(compose("train", overrides, out))
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["val/mIoU"] == pytest.approx(metrics["val/mIoU"])
    assert run.data.params["arch"] == "fcn8s" and run.data.params["backbone"] == "tiny"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 4  # every step
    (best,) = (out / "checkpoints").glob("best-*.ckpt")
    assert run.data.params["best_checkpoint"] == str(best)


def test_wandb_offline_run_keeps_metrics_on_disk(tmp_path, monkeypatch):
    wandb = need("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 2})
    out = tmp_path / "run"
    overrides = [*FAST_TRAIN, f"data.root={root}", "data.crop_size=32", "data.batch_size=2",
                 "trainer.max_epochs=1", "logger=wandb", "~callbacks.progress",
                 "++trainer.enable_progress_bar=false"]  # fmt: skip
    metrics = train(compose("train", overrides, out))
    wandb.finish()  # Lightning leaves the run open
    # Offline runs are one protobuf log each (wandb sync uploads it); values are stored as JSON.
    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    (best,) = (out / "checkpoints").glob("best-*.ckpt")
    for _ in range(100):  # W&B's service process may still be writing it
        data = log.read_bytes()
        if str(best).encode() in data:
            break
        time.sleep(0.1)
    assert b"val/mIoU" in data and json.dumps(metrics["val/mIoU"]).encode() in data
    assert str(best).encode() in data  # the best_checkpoint entry of the run's config


@pytest.mark.slow  # two trainings in a subprocess, plus Optuna's import: about 30 s idle
def test_optuna_sweep_runs_two_trials_and_reports_the_best(tmp_path):
    need("hydra_plugins.hydra_optuna_sweeper")
    root = write_voc_tree(tmp_path / "voc", {"train": 4, "val": 2})
    out = tmp_path / "sweep"
    command = [
        sys.executable, "train.py", "hparams_search=camvid_optuna", *FAST_TRAIN,
        f"data.root={root}", "data.crop_size=32", "data.batch_size=2", "trainer.max_epochs=1",
        "logger=csv", "~callbacks.progress", "++trainer.enable_progress_bar=false",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((out / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"model.lr", "model.weight_decay", "model.loss.lovasz"}
    scores = []
    for trial in ("0", "1"):
        (metrics,) = (out / trial / "csv").glob("version_*/metrics.csv")
        with open(metrics) as f:
            scores += [float(r["val/mIoU"]) for r in csv.DictReader(f) if r.get("val/mIoU")]
        overrides = yaml.safe_load((out / trial / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("model.loss.lovasz=") for o in overrides)
    assert results["best_value"] == pytest.approx(max(scores))

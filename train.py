"""Train a segmentation network: ``python train.py model=fcn8s [key=value ...]``.

``train(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the thin
Hydra entry point. See configs/train.yaml for the options.
"""

import logging
import os
from pathlib import Path

os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402

from seg.callbacks import AtomicCheckpointIO, FiniteCheckpoints, LoaderResume, RNGState  # noqa: E402
from seg.checkpoint import init_from_checkpoint  # noqa: E402
from seg.training import Budget, accumulation, parse_duration  # noqa: E402

log = logging.getLogger("seg")


def class_weights(setting, datamodule) -> list[float] | None:
    """null, 'median_frequency' (Eigen & Fergus, 2015) or an explicit list -> plain list."""
    if setting is None or isinstance(setting, list | tuple):
        return None if setting is None else [float(w) for w in setting]
    if setting != "median_frequency":
        raise ValueError(
            f"model.class_weights={setting!r} is unknown; use null, median_frequency or a list "
            f"of {datamodule.num_classes} numbers"
        )
    freqs = torch.tensor(datamodule.class_frequencies(), dtype=torch.float64)
    median = freqs[freqs > 0].median()
    return [float(median / f) if f > 0 else 0.0 for f in freqs]


def build_module(cfg: DictConfig, datamodule) -> pl.LightningModule:
    """The LightningModule from cfg.model plus what only the data knows."""
    try:
        return instantiate(
            cfg.model,
            num_classes=datamodule.num_classes,
            ignore_index=datamodule.ignore_index,
            class_names=list(datamodule.class_names),
            palette=[list(c) for c in datamodule.palette],
            mean=list(datamodule.mean),
            std=list(datamodule.std),
            class_weights=class_weights(cfg.model.get("class_weights"), datamodule),
        )
    except InstantiationException as error:  # show our own message, not Hydra's wrapper
        raise (error.__cause__ or error) from None


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    # Always on: exact mid-epoch resume and no non-finite checkpoints (see seg/callbacks.py).
    callbacks += [RNGState(), LoaderResume(), FiniteCheckpoints()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    overrides = {}
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.pop("budget", None):  # a clock instead of epochs (seg/training.py)
        callbacks.append(Budget(parse_duration(cfg.trainer.budget)))
        overrides |= {"max_epochs": -1, "max_steps": -1, "max_time": None}
    if cfg.trainer.get("sync_batchnorm") == "auto":
        # SyncBatchNorm needs CUDA; on CPU (gloo) each process keeps its own statistics.
        overrides["sync_batchnorm"] = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    trainer = instantiate(
        trainer_cfg,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],  # a killed write leaves the previous checkpoint whole
        **overrides,
    )
    effective = cfg.data.get("effective_batch_size")
    if effective:  # after construction: the device count is known only now
        trainer.accumulate_grad_batches = accumulation(
            effective, cfg.data.batch_size, trainer.num_devices, trainer.num_nodes
        )
    return trainer


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The datamodule of cfg.data; effective_batch_size is the trainer's (build_trainer)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("effective_batch_size", None)
    return instantiate(data)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) as configured; return the final logged metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    if cfg.get("init_from"):
        init_from_checkpoint(module.model, cfg.init_from)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test") and getattr(datamodule, "test_split", None):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if "test/" in k})
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # hparams beside the final metrics
            # Under hp/ so that these step-0 copies do not mix with the per-epoch curves.
            final = {f"hp/{k}": v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
            logger.log_hyperparams(module.hparams, final)
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    for logger in trainer.loggers:  # trackers (MLflow, W&B, CSV) record where the best one is
        if best_path and not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams({"best_checkpoint": best_path})
    if trainer.is_global_zero:
        run_dir = cfg.paths.output_dir
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        print(f"\nRun directory: {run_dir}")
        if best:
            print(f"Best checkpoint: {best}")
        print(f"TensorBoard: tensorboard --logdir {run_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    OmegaConf.resolve(cfg)
    metrics = train(cfg)
    return metrics.get("val/mIoU")


if __name__ == "__main__":
    main()

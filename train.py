"""Train a segmentation network: ``python train.py model=fcn8s [key=value ...]``.

``train(cfg)`` is a plain function (tests call it with a composed config); ``main`` is the thin
Hydra entry point. See configs/train.yaml for the options.
"""

import logging
import os
from contextlib import nullcontext
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from seg import checkpoint
from seg.cli import expected_errors, run
from seg.config import CLASS_WEIGHTINGS, validate
from seg.data import SkippedSamples
from seg.errors import ConfigError
from seg.report.finish import RunSummary, best_checkpoint
from seg.training import Budget, accumulation, cpu_has_bf16, parse_duration

# configs/paths/default.yaml resolves relative paths against the repository folder.
os.environ.setdefault("SEG_ROOT", str(Path(__file__).resolve().parent))

log = logging.getLogger("seg")


def class_weights(setting, datamodule) -> list[float] | None:
    """null, 'median_frequency' (Eigen & Fergus, 2015), its square root 'median_frequency_sqrt'
    (milder on rare classes), or an explicit list -> plain list."""
    if setting is None or isinstance(setting, list | tuple):
        return None if setting is None else [float(w) for w in setting]
    if setting not in CLASS_WEIGHTINGS:
        raise ConfigError(
            f"model.class_weights={setting!r} is unknown; use null, {', '.join(CLASS_WEIGHTINGS)}"
            f" or a list of {datamodule.num_classes} numbers"
        )
    freqs = torch.tensor(datamodule.class_frequencies(), dtype=torch.float64)
    median = freqs[freqs > 0].median()
    power = 0.5 if setting == "median_frequency_sqrt" else 1.0
    return [float(median / f) ** power if f > 0 else 0.0 for f in freqs]


def build_module(cfg: DictConfig, datamodule) -> pl.LightningModule:
    """The LightningModule from cfg.model plus what only the data knows."""
    in_channels = cfg.model.get("in_channels", 3)
    if in_channels != getattr(datamodule, "in_channels", 3):
        raise ValueError(
            f"model.in_channels={in_channels} but data.in_channels={datamodule.in_channels}; the "
            "network must read as many bands as the images have: set both to the same number"
        )
    try:
        return instantiate(
            cfg.model,
            num_classes=datamodule.num_classes,
            ignore_index=datamodule.ignore_index,
            class_names=list(datamodule.class_names),
            palette=[list(c) for c in datamodule.palette],
            mean=list(datamodule.mean),
            std=list(datamodule.std),
            class_weights=class_weights(plain(cfg.model).get("class_weights"), datamodule),
        )
    except InstantiationException as error:  # show our own message, not Hydra's wrapper
        raise refused(error, "model") from None


def refused(error: InstantiationException, key: str) -> BaseException:
    """What to raise when Hydra could not build ``cfg.<key>``: the cause, or a ConfigError.

    An unknown key (``+data.colour=1``) or a value Lightning refuses (``trainer.max_epochs=-5``,
    ``trainer.precision=17``) is the user's to fix, and says so in one paragraph.
    """
    cause = error.__cause__ or error
    unknown = isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause)
    lightning = isinstance(cause, MisconfigurationException) or (
        key == "trainer" and isinstance(cause, ValueError)
    )
    if key == "model" and isinstance(cause, ValueError) and not unknown:
        # e.g. an FCN over a backbone without strides 8/16/32: the model's own words say which
        return ConfigError(f"model: {str(cause).strip()}")
    if not (unknown or lightning):
        return cause
    detail = str(cause).strip().splitlines()[0].split("__init__() ")[-1]
    return ConfigError(f"{key}: {detail}. Check the {key}.* keys (see configs/{key}/)")


def auto_mixed_precision(accelerator: str) -> str:
    """trainer.precision=auto-mixed: the fastest precision this device trains in.

    A GPU: bf16 where supported (Ampere and later), else fp16. A CPU: bf16 only where it has
    bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated, and a ResNet-18 FCN-8s
    step ran 11x slower than in fp32 (AMD EPYC Zen 3, AVX2 only), so fp32.
    """
    if accelerator not in ("cpu", "auto"):  # a GPU asked for
        cuda = torch.cuda.is_available()
        return "16-mixed" if cuda and not torch.cuda.is_bf16_supported() else "bf16-mixed"
    if accelerator == "auto" and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def tests_after_fit(cfg: DictConfig) -> bool:
    """test=true with a data.test_split: the best checkpoint is tested once training ends."""
    return bool(cfg.get("test") and cfg.data.get("test_split"))


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    # Always on: exact mid-epoch resume and guarded, atomic checkpoints (see seg/checkpoint/).
    always, writer = checkpoint.lifecycle()
    summary = RunSummary(cfg.paths.output_dir, tests_after_fit(cfg))
    callbacks += [*always, SkippedSamples(), summary]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    overrides = {}
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.pop("budget", None):  # steps fixed to fill a clock (seg/training.py)
        callbacks.append(Budget(parse_duration(cfg.trainer.budget), cfg.paths.output_dir))
        overrides |= {"max_epochs": -1, "max_time": None}  # max_steps > 0: a plan repeated
    if cfg.trainer.get("sync_batchnorm") == "auto":
        # SyncBatchNorm needs CUDA; on CPU (gloo) each process keeps its own statistics.
        overrides["sync_batchnorm"] = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    if cfg.trainer.get("precision") == "auto-mixed":
        overrides["precision"] = auto_mixed_precision(cfg.trainer.accelerator)
    try:
        trainer = instantiate(
            trainer_cfg,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[writer],
            **overrides,
        )
    except InstantiationException as error:
        raise refused(error, "trainer") from None
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
    try:
        return instantiate(data)
    except InstantiationException as error:
        raise refused(error, "data") from None


def plain(cfg: DictConfig) -> dict:
    """A config as plain Python values (lists, not ListConfig)."""
    return OmegaConf.to_container(cfg, resolve=True)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) as configured; return the final logged metrics."""
    validate(plain(cfg))  # before any data is read
    with run_lock(cfg.paths.output_dir):
        return fit(cfg)


def run_lock(run_dir: str):
    """The run directory's lock, held by the main process only (DDP ranks share the directory)."""
    if rank_zero_only.rank != 0:
        return nullcontext()
    return checkpoint.RunLock(run_dir)  # also removes a killed run's partial checkpoint


def fit(cfg: DictConfig) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    if cfg.get("ckpt_path"):
        checkpoint.check_resume(cfg.ckpt_path, dict(module.hparams))
    if cfg.get("init_from"):
        checkpoint.init_from_checkpoint(module.model, cfg.init_from)
    trainer = build_trainer(cfg)  # its RunSummary reports the run when it is done
    testing = tests_after_fit(cfg)
    if testing:
        datamodule.setup("test")  # a missing or overlapping test split stops before training
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if testing:
        trainer.test(module, datamodule=datamodule, ckpt_path=best_checkpoint(trainer) or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if "test/" in k})
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@expected_errors
def main(cfg: DictConfig) -> float | None:
    OmegaConf.resolve(cfg)
    metrics = train(cfg)
    return metrics.get("val/mIoU")


if __name__ == "__main__":
    run(main)

"""Learning per compute: CamVid val mIoU after a fixed wall-clock training budget per network.

    python -m benchmarks.learning --minutes 3                 # six networks, about 25 minutes
    python -m benchmarks.learning --minutes 20                # the full comparison (about 2.5 h)
    python -m benchmarks.learning --models fcn8s/resnet18 smp:Unet/resnet34 --minutes 20

Every network trains with the project's own recipe and code: configs/experiment/camvid.yaml
(from scratch, 224x288 crops of images scaled to about 2/3, batch 8, AdamW 2e-3, poly decay,
bf16 autocast, channels_last) composed by Hydra and run by train.py's build_module/build_trainer.
A peer (smp:...) is swapped in as the module's network, so it gets the same loop, data, loss,
optimizer and schedule. For a budget of time rather than of steps, the poly decay runs over the
budget's seconds, ``(1 - elapsed / budget) ** poly_power``, in place of the module's step count,
and Lightning's ``max_time`` stops training at the budget. Validation (CamVid val, 101 images at
the recipe's ``eval_scale``, scored at 360x480) runs once, after the budget.
"""

import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from benchmarks.common import (
    CAMVID,
    base_parser,
    camvid_recipe,
    intervals,
    machine_info,
    median,
    report,
)
from benchmarks.overhead import StepClock
from benchmarks.zoo import PadTo32, available, build
from train import build_module, build_trainer

MODELS = [
    "fcn32s/resnet18",
    "fcn16s/resnet18",
    "fcn8s/resnet18",
    "unet/resnet18",
    "unet/resnet34",
    "smp:Unet/resnet34",
]
COLUMNS = [
    "model",
    "params (M)",
    "minutes",
    "steps",
    "steps/min",
    "median step s",
    "val mIoU",
    "val pixel_acc",
    "load_avg",
]


def config(name: str, args, out: str, overrides: list[str]) -> DictConfig:
    """The CamVid recipe for network `name`, without checkpoints or loggers."""
    arch, backbone = ("unet", "tiny") if ":" in name else name.split("/")  # peers: swapped in
    cfg = camvid_recipe(args.root, [
        f"model.arch={arch}", f"model.backbone={backbone}", "callbacks=none", "~logger",
        "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
        f"trainer.accelerator={args.device}", "trainer.max_epochs=100000", "++trainer.max_steps=-1",
        "trainer.check_val_every_n_epoch=1000000", *overrides,
    ], out)  # fmt: skip
    if args.device == "cuda":
        with open_dict(cfg):
            cfg.trainer.precision = "16-mixed"
    return cfg


def duration(seconds: float) -> str:
    """Lightning's DD:HH:MM:SS for a number of seconds (at least one)."""
    minutes, secs = divmod(max(1, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours // 24:02d}:{hours % 24:02d}:{minutes:02d}:{secs:02d}"


class TimePoly(pl.Callback):
    """Poly learning-rate decay over wall-clock seconds instead of steps."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        start, hp = time.perf_counter(), module.hparams

        def factor(it: int) -> float:
            left = max(0.0, 1.0 - (time.perf_counter() - start) / self.seconds)
            return left**hp.poly_power * min(1.0, (it + 1) / max(1, hp.warmup_iters))

        for config in trainer.lr_scheduler_configs:  # the module's LambdaLR, one factor per group
            config.scheduler.lr_lambdas = [factor] * len(config.scheduler.lr_lambdas)


def train_for(name: str, args) -> dict:
    """Train `name` for the budget with the recipe, validate once; steps and scores."""
    with tempfile.TemporaryDirectory() as out:
        cfg = config(name, args, out, args.override)
        seconds = 60 * args.minutes
        with open_dict(cfg):
            cfg.trainer.max_time = duration(seconds)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        module = build_module(cfg, datamodule)
        if ":" in name:
            net = PadTo32(build(name, datamodule.num_classes))
            if cfg.model.channels_last:
                net = net.to(memory_format=torch.channels_last)
            module.model = net
        trainer = build_trainer(cfg)
        ends: list[float] = []
        trainer.callbacks += [TimePoly(seconds), StepClock(ends)]
        trainer.fit(module, datamodule=datamodule)
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    return {
        "model": name,
        "params (M)": sum(p.numel() for p in module.model.parameters()) / 1e6,
        "minutes": args.minutes,
        "steps": trainer.global_step,
        "steps/min": 60 * trainer.global_step / seconds,
        "median step s": median(intervals(ends, skip=2)),
        "val mIoU": metrics["val/mIoU"],
        "val pixel_acc": metrics["val/pixel_acc"],
        "load_avg": round(os.getloadavg()[1], 2),  # 5-minute average: other work meanwhile
    }


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CAMVID, help="a VOC-layout CamVid tree")
    parser.add_argument("--models", nargs="+", default=MODELS, help="arch/backbone or smp:...")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per network")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args(argv)
    rows, skipped = [], {}
    for name in args.models:
        reason = available(name)
        if reason:
            skipped[name] = reason
            print(f"skipping {name}: {reason}", flush=True)
            continue
        rows.append(train_for(name, args))
        print(f"{name}: {rows[-1]}", flush=True)
    settings = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"
    }
    settings["skipped"] = skipped
    report(
        "learning",
        machine_info(torch.device(args.device)),
        settings,
        {"CamVid val after a fixed budget": (rows, COLUMNS)},
        args.out,
    )


if __name__ == "__main__":
    main()

"""Losses and EMA on CamVid: the recipe for a fixed number of steps, scored on two validations.

    python -m benchmarks.losses --steps 350                       # every variant, one seed
    python -m benchmarks.losses --steps 350 --variants ce ce+lovasz

Every variant trains the CamVid recipe of configs/experiment/camvid.yaml (FCN-8s/ResNet-18 from
random init, batch 8, 224x288 crops at 2/3 scale, AdamW 2e-3 with poly decay over the steps, bf16
autocast, channels_last) through train.py's build_module/build_trainer, on the sequence-held-out
protocol (data=camvid_holdout: 0001TP + 0016E5 of train), for the same number of steps (CPU time
is shared on the machines this runs on, so a step budget compares fairly where a clock does not).
The final weights (the averaged ones with EMA) are then scored on the held-out sequence 0006R0
(101 frames of a street never trained on) and on CamVid's official val (0016E5, a street that is
also in training; its ids are disjoint from the training list). Results are written after every
variant, so an interrupted run keeps what it finished.
"""

import os
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from benchmarks.common import CAMVID, base_parser, camvid_recipe, machine_info, report
from benchmarks.recipe import fit_timed

VARIANTS: dict[str, list[str]] = {
    "ce": [],
    "ce+lovasz": ["model.loss={ce: 1.0, lovasz: 0.5}"],
    "ce+dice": ["model.loss={ce: 1.0, dice: 0.5}"],
    "focal": ["model.loss=focal"],
    "ohem": ["model.loss=ohem"],
    "ce+ema": ["callbacks=ema"],
    "ce+tversky": ["model.loss={ce: 1.0, tversky: 0.5}"],
    "lovasz": ["model.loss=lovasz"],
}
THIN = ["pole", "signsymbol", "fence", "pedestrian", "bicyclist"]
COLUMNS = ["variant", "steps", "minutes", "held-out mIoU", "val mIoU"]
COLUMNS += [f"held-out {c}" for c in THIN] + [f"val {c}" for c in THIN]


def config(args, variant: list[str], out: str, data: str = "camvid_holdout") -> DictConfig:
    """The CamVid recipe on `data` for a fixed number of steps, validated only at the end."""
    return camvid_recipe(args.root, [
        f"data={data}", "callbacks=none", "~logger", "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false", f"trainer.accelerator={args.device}",
        "trainer.max_epochs=-1", f"++trainer.max_steps={args.steps}", "trainer.limit_val_batches=0",
        f"seed={args.seed}", *variant,
    ], out)  # fmt: skip


def score(module: pl.LightningModule, cfg: DictConfig, device: str) -> dict[str, float]:
    """Validation metrics of `module` on cfg.data's val split, outside any training state."""
    trainer = pl.Trainer(
        accelerator=device, precision=cfg.trainer.precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    return trainer.validate(module, datamodule=instantiate(cfg.data), verbose=False)[0]


def run_variant(name: str, args) -> dict:
    """Train variant `name` for args.steps steps; its scores on the held-out and official val."""
    with tempfile.TemporaryDirectory() as out:
        cfg = config(args, VARIANTS[name], out)
        module, trainer, minutes = fit_timed(cfg, cfg.seed)
        held = score(module, cfg, args.device)
        val = score(module, config(args, VARIANTS[name], out, data="camvid"), args.device)
    row = {"variant": name, "steps": trainer.global_step, "minutes": round(minutes, 1)}
    row |= {"held-out mIoU": 100 * held["val/mIoU"], "val mIoU": 100 * val["val/mIoU"]}
    for c in THIN:
        row[f"held-out {c}"] = 100 * held.get(f"val/iou/{c}", float("nan"))
        row[f"val {c}"] = 100 * val.get(f"val/iou/{c}", float("nan"))
    row["load_avg"] = round(os.getloadavg()[1], 2)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CAMVID, help="a VOC-layout CamVid tree")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=350, help="training steps per variant")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    info = machine_info(torch.device(args.device))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.pop("out")
    rows = []
    for name in args.variants:
        rows.append(run_variant(name, args))
        print(f"{name}: {rows[-1]}", flush=True)
        title = f"CamVid after {args.steps} steps: held-out 0006R0 and official val (%)"
        report("losses", info, settings, {title: (rows, COLUMNS)}, args.out)


if __name__ == "__main__":
    main()

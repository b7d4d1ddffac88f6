"""The first CamVid ablation: each change to the baseline recipe, on one unseen street, same budget.

Superseded for choosing by ``benchmarks.cv`` (three held-out streets, fixed steps); kept because
its results files are the record of how the earlier recipe was chosen, and ``score`` and
``CLASSES`` are shared.

    python -m benchmarks.recipe --budget 7m                         # every row, in order
    python -m benchmarks.recipe --budget 7m --rows baseline +batch4  # some rows (results merge)
    python -m benchmarks.recipe --summary   # every results/recipe*.json as one table, per seed

Every row trains FCN-8s/ResNet-18-style networks from random init on the sequence-held-out proxy
(``data=camvid_holdout``: 0001TP + 0016E5 of CamVid train, 266 frames) for the same wall-clock
budget (``trainer.budget``: changes that cost more per step get fewer steps, as they would in the
recipe), then scores the final weights on the held-out sequence 0006R0 (101 frames of a street
never trained on), with and without flip test-time augmentation, and on CamVid's official val
(0016E5, a street also in training). A row is its parent row plus one change (``ROWS``), so the
table reads as what each change bought. Rows are written to ``results/recipe.json`` as they
finish and merged with the rows already there, so rows can be run one invocation at a time; a
second seed of a row is named ``<row>@<seed>``. Run it on idle cores: the budget is a clock.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from benchmarks.common import CAMVID, RESULTS, base_parser, camvid_recipe, machine_info, report
from train import build_module, build_trainer

# name: (parent row, overrides added to the parent's). The baseline is experiment=camvid_baseline.
ROWS: dict[str, tuple[str | None, list[str]]] = {
    "baseline": (None, []),
    "+batch4": ("baseline", ["data.batch_size=4"]),
    "+colour": ("+batch4", ["data.color_jitter=0.3"]),
    "+scale": ("+colour", ["data.scale_range=[0.5,1.5]"]),
    "+fullres": ("+scale", ["data.base_size=360", "data.crop_size=[288,384]",
                            "model.eval_scale=1.0"]),
    "+mfb": ("+fullres", ["model.class_weights=median_frequency"]),
    "+ohem": ("+fullres", ["model.loss=ohem"]),
    "+sqrtmfb": ("+ohem", ["model.class_weights=median_frequency_sqrt"]),
    "+lovasz": ("+fullres", ["model.loss={ce: 1.0, lovasz: 0.5}"]),
    "+unet": ("+fullres", ["model=unet", "model.backbone=resnet18", "model.weights=null"]),
}  # fmt: skip
CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
           "pedestrian", "bicyclist"]  # fmt: skip
COLUMNS = ["row", "seed", "steps", "minutes", "held-out mIoU", "held-out +flip", "val mIoU"]
COLUMNS += [f"held-out {c}" for c in CLASSES]


def overrides(row: str) -> list[str]:
    """The row's overrides: its ancestors' and then its own, in order."""
    parent, own = ROWS[row]
    return (overrides(parent) if parent else []) + own


def config(args, row: str, seed: int, out: str, data: str = "camvid_holdout") -> DictConfig:
    """The baseline recipe plus the row's changes on `data`, for args.budget, validated after."""
    return camvid_recipe(args.root, [
        f"data={data}", "callbacks=none", "~logger", "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false", f"trainer.accelerator={args.device}",
        f"trainer.budget={args.budget}", "trainer.limit_val_batches=0", f"seed={seed}",
        "model.warmup_iters=50",  # the budget times its warm-up (seg/training.py)
        *overrides(row),
    ], out, experiment="camvid_baseline")  # fmt: skip


def score(module: pl.LightningModule, cfg: DictConfig, device: str, flip: bool) -> dict:
    """Validation metrics of `module` on cfg.data's val split, optionally with flip TTA."""
    module.hparams.eval_flip = flip
    trainer = pl.Trainer(
        accelerator=device, precision=cfg.trainer.precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    return trainer.validate(module, datamodule=instantiate(cfg.data), verbose=False)[0]


def fit_timed(cfg: DictConfig, seed: int) -> tuple[pl.LightningModule, pl.Trainer, float]:
    """Train ``cfg`` from ``seed`` as train.py builds it; the module, trainer and minutes taken."""
    pl.seed_everything(seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return module, trainer, (time.perf_counter() - start) / 60


def run_row(row: str, seed: int, args) -> dict:
    """Train `row` for the budget; its scores on the held-out sequence and the official val."""
    with tempfile.TemporaryDirectory() as out:
        cfg = config(args, row, seed, out)
        module, trainer, minutes = fit_timed(cfg, seed)
        held = score(module, cfg, args.device, flip=False)
        held_flip = score(module, cfg, args.device, flip=True)
        val = score(module, config(args, row, seed, out, data="camvid"), args.device, flip=False)
    result = {"row": row if seed == args.seeds[0] else f"{row}@{seed}", "seed": seed}
    result |= {"steps": trainer.global_step, "minutes": round(minutes, 1)}
    result |= {
        "held-out mIoU": 100 * held["val/mIoU"],
        "held-out +flip": 100 * held_flip["val/mIoU"],
    }
    result["val mIoU"] = 100 * val["val/mIoU"]
    for c in CLASSES:
        result[f"held-out {c}"] = 100 * held.get(f"val/iou/{c}", float("nan"))
    result["load_avg"] = round(os.getloadavg()[1], 2)
    return result


def summary(paths: list[Path]) -> str:
    """One Markdown table of every row and seed in the result files: steps, held-out, val."""
    runs = {}  # (row, seed) -> (result, cpu)
    for path in paths:
        data = json.loads(path.read_text())
        for results in data["tables"].values():
            for r in results:
                runs[r["row"].split("@")[0], r["seed"]] = (r, data["machine"]["cpu"])
    seeds = sorted({seed for _, seed in runs})
    cpus = {seed: next(cpu for (_, s), (_, cpu) in runs.items() if s == seed) for seed in seeds}
    head = ["row", "on top of", "change"]
    for seed in seeds:
        head += [f"{k} s{seed}" for k in ("steps", "held-out", "+flip", "val")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, (parent, own) in ROWS.items():
        if not any((row, seed) in runs for seed in seeds):
            continue
        change = " ".join(f"`{o}`" for o in own) or "`experiment=camvid_baseline`"
        cells = [row, parent or "", change]
        for seed in seeds:
            r = runs.get((row, seed), (None,))[0]
            keys = ("steps", "held-out mIoU", "held-out +flip", "val mIoU")
            cells += [f"{r[k]:.1f}" if k != "steps" else str(r[k]) for k in keys] if r else [""] * 4
        lines.append("| " + " | ".join(cells) + " |")
    legend = "; ".join(f"s{seed}: seed {seed} on {cpus[seed]}" for seed in seeds)
    note = f"mIoU %, held-out 0006R0 (+flip: with flip TTA) and official val; {legend}."
    return "\n".join([*lines, "", note])


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CAMVID, help="a VOC-layout CamVid tree")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--budget", default="7m", help="training wall-clock budget per row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--summary", action="store_true", help="print the results; train nothing")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(sorted(RESULTS.glob("recipe*.json"))))
        return
    out = args.out or RESULTS / "recipe.json"
    info = machine_info(torch.device(args.device))
    settings = {"budget": args.budget, "root": str(args.root)}
    done = json.loads(out.read_text())["tables"] if out.exists() else {}
    title = f"CamVid ablation, {args.budget} per row: held-out 0006R0 and official val (mIoU %)"
    rows = {r["row"]: r for r in done.get(title, [])}
    for seed in args.seeds:
        for row in args.rows:
            result = run_row(row, seed, args)
            rows[result["row"]] = result
            print(f"{row}: {result}", flush=True)
            ordered = sorted(
                rows.values(), key=lambda r: (list(ROWS).index(r["row"].split("@")[0]), r["seed"])
            )
            report("recipe", info, settings, {title: (ordered, COLUMNS)}, out)


if __name__ == "__main__":
    main()

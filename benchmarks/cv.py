"""Leave-one-sequence-out cross-validation of a CamVid configuration: how it does on unseen streets.

    python -m benchmarks.cv --name recipe --steps 600                     # experiment=camvid
    python -m benchmarks.cv --name +photo --steps 600 data.photometric=0.4
    python -m benchmarks.cv --summary                      # results/cv.json as a table

CamVid's training split holds three video sequences (0001TP, 0006R0, 0016E5). Each fold trains
on two of them for a fixed number of steps (so the result does not depend on how busy the machine
is) and scores the final weights on every frame of the third, a street it never saw, with the
configuration's own evaluation settings (``model.eval_flip``, ``model.eval_scale``). The row's
score is the mean over the three folds; CamVid's official val (frames of 0016E5, a street in two
of the folds' training) is reported beside it, never used to choose. Fold lists are
``data/camvid_splits/holdout_<SEQ>/`` (``python -m seg.doctor.sequences``). Rows are merged into
``results/cv.json`` by ``name@seed``, so rows can be run one invocation at a time. A second
seed of a row tells its noise: decide only on differences larger than that.
"""

import json
import os
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.common import (
    CAMVID,
    REPO,
    RESULTS,
    base_parser,
    camvid_recipe,
    cpu_model,
    machine_info,
    markdown_table,
    report,
)
from benchmarks.recipe import CLASSES, fit_timed, score

SEQUENCES = ("0001TP", "0006R0", "0016E5")
SPLITS = REPO / "data" / "camvid_splits"
TITLE = "CamVid leave-one-sequence-out cross-validation (mIoU %)"


def fold_overrides(held: str) -> list[str]:
    """Train on the other two sequences, validate on `held`."""
    lists = SPLITS / f"holdout_{held}"
    return [f"data.train_split={lists / 'train.txt'}", f"data.val_split={lists / 'val.txt'}"]


def run_fold(held: str, args) -> dict:
    """Train the configuration without `held` for args.steps; its scores there and on val."""
    common = [
        "callbacks=none", "~logger", "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false", f"trainer.accelerator={args.device}",
        f"trainer.max_steps={args.steps}", "trainer.max_epochs=-1", "trainer.budget=null",
        "trainer.limit_val_batches=0", f"seed={args.seed}", *args.overrides,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        cfg = camvid_recipe(args.root, [*common, *fold_overrides(held)], out, args.experiment)
        module, trainer, minutes = fit_timed(cfg, args.seed)
        flip = bool(module.hparams.get("eval_flip", False))
        cfg.trainer.precision = trainer.precision  # what auto-mixed resolved to
        held_out = score(module, cfg, args.device, flip=flip)
        official = camvid_recipe(args.root, common, out, args.experiment)
        official.trainer.precision = trainer.precision
        val = score(module, official, args.device, flip=flip)
    result = {"held": held, "steps": trainer.global_step, "minutes": round(minutes, 1)}
    result |= {"mIoU": 100 * held_out["val/mIoU"], "val mIoU": 100 * val["val/mIoU"]}
    for c in CLASSES:  # a class absent from a street has no IoU there
        result[c] = 100 * held_out.get(f"val/iou/{c}", float("nan"))
    return result


def mean(values: list[float]) -> float:
    values = [v for v in values if v == v]  # NaN: the class is absent from that street
    return statistics.fmean(values) if values else float("nan")


def run_row(args) -> dict:
    """Every fold of the configuration, and their means."""
    folds = []
    for held in args.folds:
        folds.append(run_fold(held, args))
        print(f"{args.name}@{args.seed} fold {held}: {folds[-1]}", flush=True)
    row = {"row": f"{args.name}@{args.seed}", "name": args.name, "seed": args.seed}
    row |= {"experiment": args.experiment, "overrides": " ".join(args.overrides)}
    row |= {"steps": args.steps, "minutes": round(sum(f["minutes"] for f in folds), 1)}
    row |= {f"mIoU {f['held']}": f["mIoU"] for f in folds}
    row["mIoU"] = mean([f["mIoU"] for f in folds])
    row["val mIoU"] = mean([f["val mIoU"] for f in folds])
    row |= {c: mean([f[c] for f in folds]) for c in CLASSES}
    row |= {"cpu": cpu_model(), "load_avg": round(os.getloadavg()[1], 2)}
    return row


def columns(rows: list[dict]) -> list[str]:
    folds = [f"mIoU {s}" for s in SEQUENCES if any(f"mIoU {s}" in r for r in rows)]
    head = ["row", "overrides", "steps", "minutes", *folds, "mIoU", "val mIoU"]
    return head + CLASSES


def summary(path: Path) -> str:
    data = json.loads(path.read_text())
    rows = data["tables"][TITLE]
    cpus = sorted({r.get("cpu", data["machine"]["cpu"]) for r in rows})
    return markdown_table(rows, columns(rows)) + (
        "\n\nmIoU %: each fold's held-out street, their mean, and official val (0016E5, a street"
        " in training; not used to choose); per-class columns are fold means. CPU: "
        + "; ".join(cpus)
        + "."
    )


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides on top of the experiment")
    parser.add_argument("--name", default="recipe", help="the row's name")
    parser.add_argument("--experiment", default="camvid", help="configs/experiment/ to start from")
    parser.add_argument("--steps", type=int, default=600, help="training steps per fold")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", nargs="+", default=list(SEQUENCES), choices=SEQUENCES)
    parser.add_argument("--root", type=Path, default=CAMVID, help="a VOC-layout CamVid tree")
    parser.add_argument("--summary", action="store_true", help="print the results; train nothing")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / "cv.json"
    if args.summary:
        print(summary(out))
        return
    row = run_row(args)
    done = json.loads(out.read_text())["tables"][TITLE] if out.exists() else []
    rows = {r["row"]: r for r in done} | {row["row"]: row}
    info = machine_info(torch.device(args.device))
    settings = {"root": str(args.root), "folds": list(SEQUENCES)}
    report("cv", info, settings, {TITLE: (list(rows.values()), columns(list(rows.values())))}, out)


if __name__ == "__main__":
    main()

"""The planner against the defaults and the CamVid recipe, at equal minutes, on data of seven kinds.

    python -m benchmarks.plan_kinds --budget 3m                    # every kind, every arm
    python -m benchmarks.plan_kinds --kinds grey binary --budget 3m
    python -m benchmarks.plan_kinds --arms plan model.bn_momentum=null   # a row "plan model..."
    python -m benchmarks.plan_kinds --summary                      # results/plan_kinds.json

The kinds are built from ``../shared/data`` under ``--work`` (reused when already there):

- ``streets``: CamVid at 360x480, 11 classes; trained on the sequences 0001TP and 0016E5 (266
  frames), validated on every third frame of 0006R0 (34), a street it never saw;
- ``voc``: the Pascal VOC sample, 21 classes, few large objects and very few images (3 to train,
  14 to validate);
- ``grey``: ``streets`` as single-band 8-bit images;
- ``binary``: ``streets`` reduced to car against everything else, masks 0/255;
- ``tiles``: ``streets`` as 720x960 mosaics of four consecutive frames (65 to train, 25 of 0006R0
  to validate), much larger than any crop;
- ``multiband16``: ``streets`` as 4-band 16-bit TIFFs (RGB scaled to 16 bits, and a fourth band,
  the blurred luminance);
- ``few``: ``streets`` with only 10 training frames, evenly spaced over its two sequences, and
  the same held-out street to validate; ``five``: the same with 5 frames.

Each arm trains with ``trainer.budget`` (``--budget``) through ``train.py`` and is scored by the
validation of its last step, which the budget always runs (``val/mIoU`` of the CSV log), with
the arm's own evaluation settings:

- ``plan``: ``python -m seg.plan ROOT --budget B`` (its probe bounded by ``--probe-seconds``),
  then ``train.py experiment=<plan>``;
- ``defaults``: ``train.py data=<kind>`` with nothing chosen for the data: FCN-8s over
  MobileNetV3-Large, ImageNet weights when they can be had (offline: random init, as here), SGD;
  only ``model.warmup_iters=10``, which the budget needs to time its steps;
- ``paper``: the same over the paper's VGG16 (``model.backbone=vgg16``), the defaults before
  MobileNetV3-Large;
- ``recipe``: ``train.py experiment=camvid data=<kind>``, the CamVid recipe as it is, with colour
  jitter off for images that are not 8-bit RGB (it cannot jitter them).

Runs use one torch thread each (``OMP_NUM_THREADS=1``); the ``seconds`` column is the whole
``train.py`` process, imports and set-up included; ``taken`` is the budget's own clock, training
and its validations (``budget.json``), which the budget must hold to within 10 %.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image, ImageFilter

from benchmarks.common import REPO, RESULTS, cpu_model, machine_info, markdown_table, report

SHARED = REPO.parent / "shared" / "data"
CAMVID = SHARED / "camvid"
VOC = SHARED / "voc_mini" / "VOC2012"
KINDS = ("streets", "voc", "grey", "binary", "tiles", "multiband16", "few", "five")
FEW = {"few": 10, "five": 5}  # training frames of the kinds with few images
ARMS = ("plan", "defaults", "paper", "recipe")
TITLE = "The plan against the defaults and the CamVid recipe at equal minutes (val mIoU %)"
CAR = 8  # CamVid's class index of car


def camvid_ids() -> tuple[list[str], list[str]]:
    """Train on 0001TP and 0016E5, validate on every third frame of the street 0006R0."""
    ids = (CAMVID / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    return [i for i in ids if not i.startswith("0006R0")], [
        i for i in ids if i.startswith("0006R0")
    ]


def camvid_pair(image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(CAMVID / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
    return image, np.asarray(Image.open(CAMVID / "SegmentationClass" / f"{image_id}.png"))


def mosaic(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Four frames as one 2x2 tile."""
    pairs = [camvid_pair(i) for i in ids]
    rows = [
        np.concatenate([pairs[k][n] for k in (r, r + 1)], axis=1) for n in (0, 1) for r in (0, 2)
    ]
    return np.concatenate(rows[:2], axis=0), np.concatenate(rows[2:], axis=0)


def write(root: Path, split: str, image_id: str, image: np.ndarray, mask: np.ndarray, kind: str):
    images, masks = root / "images" / split, root / "masks" / split
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    if kind == "multiband16":
        grey = Image.fromarray(image).convert("L").filter(ImageFilter.GaussianBlur(3))
        bands = np.dstack([image, np.asarray(grey)]).astype(np.uint16) * 257
        tifffile.imwrite(images / f"{image_id}.tif", bands, photometric="minisblack")
    elif kind == "grey":
        Image.fromarray(image).convert("L").save(images / f"{image_id}.png")
    else:
        Image.fromarray(image).save(images / f"{image_id}.png")
    if kind == "binary":
        mask = np.where(mask == CAR, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(masks / f"{image_id}.png")


def build(kind: str, work: Path) -> Path:
    """The kind's tree under work/data/<kind> (folder layout, split sub-folders)."""
    if kind == "voc":
        return VOC
    root = work / "data" / kind
    if (root / "class_names.txt").exists():
        return root
    train, held = camvid_ids()
    if kind == "tiles":
        for split, ids in (("train", train), ("val", held)):
            for k in range(0, len(ids) - 3, 4):
                if ids[k][:6] == ids[k + 3][:6]:  # four frames of one sequence
                    write(root, split, f"{ids[k]}_x4", *mosaic(ids[k : k + 4]), kind)
    else:
        if kind in FEW:
            train = train[:: len(train) // FEW[kind]][: FEW[kind]]
        for split, ids in (("train", train), ("val", held[::3])):
            for image_id in ids:
                write(root, split, image_id, *camvid_pair(image_id), kind)
    names = (CAMVID / "class_names.txt").read_text()
    (root / "class_names.txt").write_text("background\ncar\n" if kind == "binary" else names)
    return root


def run(command: list[str], log: Path) -> tuple[int, float]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return done.returncode, time.monotonic() - start


def last_val(run_dir: Path) -> dict:
    """The last validation's mIoU and the step it was taken at, from the CSV log."""
    rows = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            rows += [r for r in csv.DictReader(f) if r.get("val/mIoU")]
    if not rows:
        return {}
    last = max(rows, key=lambda r: int(r["step"]))
    return {"mIoU": 100 * float(last["val/mIoU"]), "step": int(last["step"])}


def label(name: str, overrides: list[str]) -> str:
    """An arm's row name: the arm, and the overrides added to it."""
    return " ".join([name, *overrides])


def arm(kind: str, name: str, root: Path, args) -> dict:
    """Plan (for the plan arm) and train one arm; its score and times."""
    tag = label(name, args.overrides).replace(" ", "_").replace("/", "_").replace("=", "-")
    configs, runs = args.work / "configs", args.work / "runs" / f"{kind}-{tag}"
    search = f"hydra.searchpath=[file://{configs}]"
    common = [search, "logger=csv", "callbacks=none", f"paths.output_dir={runs}",
              f"hydra.run.dir={runs}", f"seed={args.seed}", "++trainer.enable_progress_bar=false",
              "++trainer.enable_model_summary=false",
              "++trainer.enable_checkpointing=false"]  # fmt: skip
    planned = {}
    if name == "plan":
        plan = [sys.executable, "-m", "seg.plan", str(root), "--budget", args.budget,
                "--name", f"kind_{kind}", "--configs", str(configs),
                "--splits-dir", str(args.work / "splits" / kind),
                "--probe-seconds", str(args.probe_seconds)]  # fmt: skip
        runs.mkdir(parents=True, exist_ok=True)
        code, seconds = run(plan, runs.parent / f"{kind}-plan.log")
        planned = {"plan seconds": round(seconds, 1)}
        if code:
            return planned | {"error": f"seg.plan exit {code}"}
        overrides = [f"experiment=kind_{kind}"]
    else:
        if not (configs / "data" / f"kind_{kind}.yaml").exists():
            return {"error": "no data config: run the plan arm first"}
        overrides = [f"data=kind_{kind}", f"trainer.budget={args.budget}"]
        if name in ("defaults", "paper"):
            overrides += ["trainer.max_epochs=-1", "model.warmup_iters=10"]
            overrides += ["model.backbone=vgg16"] if name == "paper" else []
        else:
            overrides = ["experiment=camvid", *overrides]
            if kind in ("grey", "multiband16"):
                overrides.append("data.color_jitter=0.0")
    shutil.rmtree(runs / "csv", ignore_errors=True)  # an earlier run's log would be read too
    code, seconds = run(
        [sys.executable, "train.py", *overrides, *args.overrides, *common],
        runs.parent / f"{kind}-{tag}.log",
    )
    budget = runs / "budget.json"
    plan = json.loads(budget.read_text()) if budget.exists() else {}
    result = planned | {"seconds": round(seconds, 1), "taken": plan.get("seconds_taken")}
    result |= {"steps": plan.get("steps")} | last_val(runs)
    return result | ({"error": f"train.py exit {code}"} if code else {})


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="train.py overrides added to every arm run")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--budget", default="3m", help="training time per arm")
    parser.add_argument("--probe-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=Path("/tmp/plan_kinds"))
    parser.add_argument("--out", type=Path, default=RESULTS / "plan_kinds.json")
    parser.add_argument("--summary", action="store_true", help="print the results; train nothing")
    args = parser.parse_args(argv)
    if args.summary:
        print(markdown_table(*table(json.loads(args.out.read_text())["tables"][TITLE])))
        return
    rows = json.loads(args.out.read_text())["tables"][TITLE] if args.out.exists() else []
    for kind in args.kinds:
        root = build(kind, args.work)
        for name in args.arms:
            found = arm(kind, name, root, args)
            print(f"{kind} {name}: {found}", flush=True)
            arm_name = label(name, args.overrides)
            row = {"kind": kind, "arm": arm_name, "budget": args.budget, "seed": args.seed} | found
            row |= {"cpu": cpu_model(), "load_avg": round(os.getloadavg()[1], 2)}
            key = (kind, arm_name, args.seed)
            rows = [r for r in rows if (r["kind"], r["arm"], r["seed"]) != key] + [row]
            info = machine_info(torch.device("cpu")) | {"torch_threads": 1}
            report("plan_kinds", info, vars_of(args), {TITLE: table(rows)}, args.out)


def vars_of(args) -> dict:
    return {"budget": args.budget, "probe_seconds": args.probe_seconds, "work": str(args.work)}


def table(rows: list[dict]) -> tuple[list[dict], list[str]]:
    head = ["kind", "arm", "budget", "seed", "plan seconds", "seconds", "taken", "steps", "step",
            "mIoU"]  # fmt: skip
    return rows, head + (["error"] if any("error" in r for r in rows) else [])


if __name__ == "__main__":
    main()

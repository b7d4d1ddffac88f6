"""Speed options: precision, channels_last and torch.compile on one network, in one run.

    python -m benchmarks.options
    python -m benchmarks.options --model unet/resnet34 --no-compile

The eager variants (fp32 / bf16 autocast on CPU or fp16 AMP on CUDA, each with and without
channels_last; and, for comparison, the FCN upsamplers in bf16 like the other layers instead of
the fp32 that seg.models.layers.UpConv keeps them in under CPU autocast) are timed alternately
step by step. ``torch.compile`` runs last, with the fast
eager setting: its first call (the compilation) is reported apart, then its steady-state speed is
timed alternately against the same setting in eager mode.
"""

import time

import torch

from benchmarks.common import base_parser, machine_info, median, report, sync, time_rounds
from benchmarks.steps import Setup, make_step
from benchmarks.zoo import bf16_upsamplers, build

COLUMNS = [
    "variant",
    "train img/s",
    "train speed-up",
    "infer img/s",
    "infer speed-up",
    "versus",
    "first call s",
]


def variants(args) -> dict[str, tuple[str, bool, bool]]:
    """Name -> (precision, channels_last, upsamplers in bf16 too)."""
    low = "16" if args.device == "cuda" else "bf16"
    return {
        "fp32": ("32", False, False),
        "fp32 + channels_last": ("32", True, False),
        low: (low, False, False),
        f"{low} + channels_last": (low, True, False),
        f"{low} + channels_last, upsamplers {low}": (low, True, True),
    }


def setup(args, train: bool, precision: str, channels_last: bool) -> Setup:
    crop = tuple(args.crop)
    return Setup(
        args.model, train, args.batch_size, crop, 21, precision, channels_last, args.device
    )


def eager(args) -> dict[str, dict]:
    """Images/s of every eager variant, train and inference."""
    rows = {name: {"variant": name} for name in variants(args)}
    for mode, train in (("train", True), ("infer", False)):
        steps = {}
        for name, (precision, channels_last, low_up) in variants(args).items():
            model = build(args.model, 21)
            model = bf16_upsamplers(model) if low_up else model
            steps[name] = make_step(setup(args, train, precision, channels_last), model)
        times = time_rounds(steps, torch.device(args.device), args.warmup, args.iters)
        for name in steps:
            rows[name][f"{mode} img/s"] = args.batch_size / median(times[name])
    return rows


def compiled(args, precision: str, channels_last: bool, low_up: bool) -> tuple[dict, dict]:
    """Rows for torch.compile and the same eager setting, timed alternately after compiling."""
    device = torch.device(args.device)
    rows = {"eager": {}, "compiled": {}}
    for mode, train in (("train", True), ("infer", False)):
        s = setup(args, train, precision, channels_last)
        model = build(args.model, 21)
        model = bf16_upsamplers(model) if low_up else model
        steps = {"eager": make_step(s, model), "compiled": make_step(s, torch.compile(model))}
        start = time.perf_counter()
        steps["compiled"]()
        sync(device)
        rows["compiled"][f"{mode} first call s"] = time.perf_counter() - start
        times = time_rounds(steps, device, args.warmup, args.iters)
        for name in steps:
            rows[name][f"{mode} img/s"] = args.batch_size / median(times[name])
    return rows["eager"], rows["compiled"]


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn8s/resnet18", help="arch/backbone")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)
    rows = eager(args)
    fastest = max(rows, key=lambda n: rows[n]["train img/s"])
    for row in rows.values():
        row["versus"] = "fp32"
    if args.compile:
        again, comp = compiled(args, *variants(args)[fastest])
        rows["eager, beside compile"] = {"versus": "fp32", **again}
        rows[f"{fastest} + torch.compile"] = {"versus": "eager, beside compile", **comp}
    table = []
    for name, row in rows.items():
        base = rows[row["versus"]]
        for mode in ("train", "infer"):
            row[f"{mode} speed-up"] = row[f"{mode} img/s"] / base[f"{mode} img/s"]
        if "train first call s" in row:
            row["first call s"] = (
                f"train {row['train first call s']:.0f}, infer {row['infer first call s']:.0f}"
            )
        table.append({"variant": name, **row})
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report("options", machine_info(torch.device(args.device)), settings,
           {"Speed options": (table, COLUMNS)}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()

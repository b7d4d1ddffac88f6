"""Levers on the training step: each one against the CamVid recipe's step, interleaved, one run.

    python -m benchmarks.levers                            # every lever
    python -m benchmarks.levers --only optimizer threads --iters 20
    python -m benchmarks.levers --device cuda

A is the CamVid recipe's step (FCN-8s/ResNet-18, 11 classes, batch 8, 224x288, bf16 autocast on
CPU or fp16 AMP on CUDA, channels_last, AdamW as torch builds it by default); B changes one
thing. A and B are timed alternately step by step (A B A B) after warm-up; the ratio is the median
over rounds of B's steps/s over A's in the same round. The levers:

- ``compile``: ``torch.compile`` of the network (forward and, through AOTAutograd, backward) in
  each ``--compile-modes``; the first call, which compiles, is timed apart.
- ``optimizer``: AdamW's ``foreach`` and ``fused`` implementations (``model.optimizer_impl``).
- ``upsamplers``: the FCN upsamplers in bf16 like every other layer, against the fp32 that
  ``seg.models.layers.UpConv`` keeps them in under CPU autocast (numerics change).
- ``batch``: other batch sizes; the notes give the images/s ratio (numerics change).
- ``threads``: ``torch.set_num_threads(n)`` around B's step.
- ``allocator``: tcmalloc / jemalloc through ``LD_PRELOAD``, which needs a process per arm: A and
  B run as child processes, alternately, ``--rounds`` times each (benchmarks/allocator.py).
- ``loader``: training fed by the recipe's CamVid loader with other worker counts (and
  ``pin_memory`` on CUDA); both loaders' workers run at once, as in any A/B of loaders.
"""

import argparse
import os
import time
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import allocator
from benchmarks.common import CAMVID, base_parser, machine_info, median, report, sync, time_rounds
from benchmarks.profile import loader_batches
from benchmarks.steps import Setup, make_step, trainer_for
from benchmarks.zoo import bf16_upsamplers, build

LEVERS = ["compile", "optimizer", "upsamplers", "batch", "threads", "allocator", "loader"]
COLUMNS = ["lever", "steps/s A", "steps/s B", "ratio B/A", "notes"]


def recipe(args) -> Setup:
    """The CamVid recipe's training step (arm A)."""
    return Setup(
        args.model, True, args.batch_size, tuple(args.crop), 11, args.precision,
        args.channels_last, args.device, optimizer="adamw",
    )  # fmt: skip


def ab_row(lever: str, a: list[float], b: list[float], notes: str = "") -> dict:
    """A table row from per-round step seconds of A and B (same rounds, same order)."""
    ratios = [ta / tb for ta, tb in zip(a, b, strict=False)]
    return {
        "lever": lever,
        "steps/s A": 1 / median(a),
        "steps/s B": 1 / median(b),
        "ratio B/A": median(ratios),
        "notes": notes,
    }


def pair(args, a, b) -> tuple[list[float], list[float]]:
    """Seconds per step of A and B, alternating step by step."""
    times = time_rounds({"A": a, "B": b}, torch.device(args.device), args.warmup, args.iters)
    return times["A"], times["B"]


def compile_rows(args) -> list[dict]:
    rows = []
    for mode in args.compile_modes:
        setup = recipe(args)
        compiled = make_step(setup, torch.compile(build(args.model, 11), mode=mode))
        start = time.perf_counter()
        compiled()
        sync(torch.device(args.device))
        first = time.perf_counter() - start
        a, b = pair(args, make_step(setup), compiled)
        rows.append(ab_row(f"torch.compile mode={mode}", a, b, f"first call {first:.1f} s"))
    return rows


def optimizer_rows(args) -> list[dict]:
    setup = recipe(args)
    rows = []
    for impl in ("foreach", "fused"):
        a, b = pair(args, make_step(setup), make_step(replace(setup, optimizer_impl=impl)))
        rows.append(ab_row(f"AdamW {impl}", a, b, f"model.optimizer_impl={impl}"))
    return rows


def upsampler_rows(args) -> list[dict]:
    setup = recipe(args)
    low = bf16_upsamplers(build(args.model, 11))
    a, b = pair(args, make_step(setup), make_step(setup, low))
    notes = "A keeps them in fp32 (UpConv)" if args.device == "cpu" else "UpConv is plain on CUDA"
    return [ab_row(f"upsamplers in {args.precision}", a, b, notes)]


def batch_rows(args) -> list[dict]:
    setup = recipe(args)
    rows = []
    for size in args.batch_sizes:
        a, b = pair(args, make_step(setup), make_step(replace(setup, batch_size=size)))
        row = ab_row(f"batch {size}", a, b)
        row["notes"] = f"images/s ratio {row['ratio B/A'] * size / args.batch_size:.2f}"
        rows.append(row)
    return rows


def thread_rows(args) -> list[dict]:
    setup = recipe(args)
    default = torch.get_num_threads()
    rows = []
    for threads in args.threads:
        b_step = make_step(setup)

        def with_threads(step=b_step, n=threads) -> None:
            torch.set_num_threads(n)
            try:
                step()
            finally:
                torch.set_num_threads(default)

        a, b = pair(args, make_step(setup), with_threads)
        rows.append(ab_row(f"set_num_threads({threads})", a, b, f"A: {default} threads"))
    return rows


def allocator_rows(args) -> list[dict]:
    rows = []
    for name in args.allocators:
        library = allocator.find(name)
        if library is None:
            package = allocator.LIBRARIES[name][1]
            rows.append({"lever": name, "notes": f"not installed: apt-get install {package}"})
            continue
        a, b = allocator.rounds(args, library)
        notes = f"LD_PRELOAD={library}; {args.rounds} child runs per arm"
        rows.append(ab_row(f"{name} (LD_PRELOAD)", a, b, notes))
    return rows


def loader_rows(args) -> list[dict]:
    if not (args.root / "ImageSets").is_dir():
        return [{"lever": "loader", "notes": f"skipped: no CamVid at {args.root} (--root)"}]
    device = torch.device(args.device)
    variants = [(f"{w} loader workers", w, []) for w in args.loader_workers]
    if device.type == "cuda":
        variants.append(("pin_memory=false", args.workers, ["data.pin_memory=false"]))
    rows = []
    for name, workers, overrides in variants:
        steps = []
        for w, extra in ((args.workers, []), (workers, overrides)):
            setup = recipe(args)
            layout = torch.channels_last if setup.channels_last else torch.contiguous_format
            model = build(args.model, 11).to(device, memory_format=layout)
            train_step = trainer_for(model, setup)
            source = loader_batches(Namespace(**{**vars(args), "workers": w}), extra)
            steps.append(lambda s=train_step, src=source: s(*next(src)))
        a, b = pair(args, *steps)
        rows.append(ab_row(name, a, b, f"A: {args.workers} workers"))
    return rows


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=LEVERS, default=LEVERS)
    parser.add_argument("--model", default="fcn8s/resnet18", help="arch/backbone")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--precision", choices=["32", "bf16", "16"], default=None,
                        help="default: bf16 autocast on CPU, 16 (AMP) on CUDA")  # fmt: skip
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10, help="timed steps per arm")
    parser.add_argument(
        "--compile-modes", nargs="+", default=["default", "max-autotune-no-cudagraphs"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    cores = os.cpu_count() or 1
    threads = sorted({1, max(1, cores // 2), 2 * cores} - {torch.get_num_threads()})
    parser.add_argument("--threads", type=int, nargs="+", default=threads)
    parser.add_argument("--allocators", nargs="+", default=list(allocator.LIBRARIES))
    parser.add_argument("--rounds", type=int, default=3, help="allocator: child runs per arm")
    parser.add_argument("--root", type=Path, default=CAMVID, help="CamVid in VOC layout")
    parser.add_argument("--workers", type=int, default=2, help="A's loader workers")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.precision = args.precision or ("16" if args.device == "cuda" else "bf16")
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.child:  # one arm of the allocator lever, in its own process
        allocator.child(args, make_step(recipe(args)))
        return
    levers = {
        "compile": compile_rows,
        "optimizer": optimizer_rows,
        "upsamplers": upsampler_rows,
        "batch": batch_rows,
        "threads": thread_rows,
        "allocator": allocator_rows,
        "loader": loader_rows,
    }
    rows = [row for name in args.only for row in levers[name](args)]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.pop("out")
    title = "Each lever against the recipe's step"
    report(
        "levers",
        machine_info(torch.device(args.device)),
        settings,
        {title: (rows, COLUMNS)},
        args.out,
    )


if __name__ == "__main__":
    main()

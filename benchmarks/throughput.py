"""Throughput and memory: train and inference images/s and peak memory per arch x backbone.

    python -m benchmarks.throughput                       # 4 archs x resnet18, mobilenet_v3_large
    python -m benchmarks.throughput --backbones all       # every pair (about 20 min on 2 cores)

A train step is forward + fp32 cross-entropy + backward + SGD step; inference runs under
``torch.inference_mode``. FLOPs are counted per image with ``torch.utils.flop_counter`` (2 per
multiply-add; a train step counts forward and backward).
"""

import gc

import torch
from torch import nn

from benchmarks.common import base_parser, count_flops, machine_info, median, report, time_rounds
from benchmarks.steps import Setup, inputs, make_step, peak_memory_mb
from benchmarks.zoo import build
from seg.models import BACKBONES, DECODERS, count_parameters

COLUMNS = [
    "model",
    "params (M)",
    "train GFLOP/img",
    "train img/s",
    "train GFLOP/s",
    "train peak MiB",
    "infer GFLOP/img",
    "infer img/s",
    "infer GFLOP/s",
    "infer peak MiB",
]


def add_measure_flags(parser) -> None:
    """Flags shared by the scripts that time networks."""
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument(
        "--precision",
        choices=["32", "bf16", "16"],
        default=None,
        help="default: bf16 autocast on CPU, 16 (AMP) on CUDA",
    )
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per network and mode")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the peak-memory probes (each runs in a fresh process)",
    )


def setup_for(name: str, train: bool, args) -> Setup:
    precision = args.precision or ("16" if args.device == "cuda" else "bf16")
    crop = tuple(args.crop)
    return Setup(
        name,
        train,
        args.batch_size,
        crop,
        args.num_classes,
        precision,
        args.channels_last,
        args.device,
    )


def flops_and_params(model: nn.Module, args) -> dict[str, float]:
    """Parameters (M) and GFLOPs per image for training and inference, at batch 1 in fp32."""
    images = inputs(Setup("", False, 1, tuple(args.crop), args.num_classes))[0]
    return {
        "params (M)": count_parameters(model) / 1e6,
        "train GFLOP/img": count_flops(model, images, train=True) / 1e9,
        "infer GFLOP/img": count_flops(model, images, train=False) / 1e9,
    }


def measure(names: list[str], args) -> list[dict]:
    """One row per network; the networks are timed alternately, step by step, within each mode."""
    models = {name: build(name, args.num_classes) for name in names}  # one each for all modes
    rows = {name: {"model": name, **flops_and_params(models[name], args)} for name in names}
    device = torch.device(args.device)
    for mode, train in (("train", True), ("infer", False)):
        steps = {name: make_step(setup_for(name, train, args), models[name]) for name in names}
        times = time_rounds(steps, device, args.warmup, args.iters)
        del steps
        gc.collect()
        for name in names:
            row = rows[name]
            row[f"{mode} img/s"] = args.batch_size / median(times[name])
            row[f"{mode} GFLOP/s"] = row[f"{mode} GFLOP/img"] * row[f"{mode} img/s"]
            if args.memory:
                row[f"{mode} peak MiB"] = peak_memory_mb(setup_for(name, train, args))
    return list(rows.values())


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["resnet18", "mobilenet_v3_large"],
        help=f"'all' or some of: {' '.join(BACKBONES)}",
    )
    add_measure_flags(parser)
    args = parser.parse_args(argv)
    backbones = list(BACKBONES) if args.backbones == ["all"] else args.backbones
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        parser.error(f"unknown backbones {unknown}; choose from: {' '.join(BACKBONES)}")
    rows, skipped = [], []
    for backbone in backbones:
        for arch in args.archs:
            try:
                build(f"{arch}/{backbone}", args.num_classes)
            except ValueError as err:  # FCN needs stride 32: not on the U-Net encoder
                skipped.append(f"{arch}/{backbone}: {str(err).split(';')[0]}")
                continue
            rows += measure([f"{arch}/{backbone}"], args)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings["precision"] = setup_for("", True, args).precision
    settings["skipped"] = skipped
    report(
        "throughput",
        machine_info(torch.device(args.device)),
        settings,
        {"Train and inference per network": (rows, COLUMNS)},
        args.out,
    )


if __name__ == "__main__":
    main()

"""Where the training step's time goes: a torch.profiler breakdown by category, against the peak.

    python -m benchmarks.profile                          # the CamVid recipe on ../shared/data
    python -m benchmarks.profile --synthetic              # a fixed in-memory batch, no data wait
    python -m benchmarks.profile --device cuda

The step is the CamVid recipe's (configs/experiment/camvid.yaml): FCN-8s/ResNet-18, 11 classes,
batch 8, 224x288 crops, bf16 autocast (fp16 AMP on CUDA), channels_last, AdamW, fed by the
recipe's loader (or a fixed batch with ``--synthetic``). Every profiled op's self time goes to the
category of its nearest enclosing op that has one (an autocast cast inside ``aten::conv2d`` is
convolution time); time the profiler sees in no categorised op, and Python between ops, is
"other". ``aten::convolution_backward`` computes the input and weight gradients in one call: its
time is split between backward-data and backward-weight in proportion to the FLOPs of each part,
call by call (an assumption that both run at the same rate; the FLOPs are exact). Transposed
convolutions (the FCN upsamplers), forward and backward, are "upsampling". FLOPs come from each
call's recorded shapes, 2 per multiply-add; achieved GFLOP/s is set against the dense matmul peak
of the dtype the convolutions ran in, measured in the same run. On CUDA the op times are device
(kernel) times and data wait is host time.
"""

import time
from collections import defaultdict
from itertools import cycle
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import conv_flop_count

from benchmarks.common import (
    CAMVID,
    base_parser,
    camvid_recipe,
    conv_backward_flops,
    machine_info,
    report,
    sync,
)
from benchmarks.roofline import DTYPES, matmul_gflops
from benchmarks.steps import Setup, inputs, trainer_for
from benchmarks.zoo import build

CATEGORIES = [
    "conv forward",
    "conv backward-data",
    "conv backward-weight",
    "batch norm",
    "activations",
    "upsampling",
    "loss",
    "optimizer",
    "data wait",
    "other",
]
# Lower-case name fragments -> category, first match wins (convolutions are decided by flags).
RULES = [
    ("data wait", "data wait"),
    ("optimizer.", "optimizer"),
    ("batch_norm", "batch norm"),
    ("softmax", "loss"),
    ("nll_loss", "loss"),
    ("cross_entropy", "loss"),
    ("conv_transpose", "upsampling"),
    ("upsample", "upsampling"),
    ("relu", "activations"),
    ("threshold_backward", "activations"),
    ("hardswish", "activations"),
    ("hardsigmoid", "activations"),
    ("sigmoid", "activations"),
    ("aten::conv2d", "conv forward"),
]
DTYPE_NAMES = {"float": "32", "c10::BFloat16": "bf16", "c10::Half": "16"}
COLUMNS = ["category", "ms/step", "share %", "GFLOP/step", "GFLOP/s", "dtype", "% of peak"]


def own_category(event) -> str | None:
    """The category an op decides by itself, or None (it takes its parent's)."""
    if event.name == "aten::_convolution":
        return "upsampling" if event.concrete_inputs[6] else "conv forward"
    if event.name == "aten::convolution_backward":
        return "upsampling" if event.concrete_inputs[7] else "conv backward"
    name = event.name.lower()
    return next((category for fragment, category in RULES if fragment in name), None)


def decider(event):
    """The nearest op, itself included, that has a category (None: the step's glue)."""
    while event is not None and own_category(event) is None:
        event = event.cpu_parent
    return event


def backward_flops(event) -> tuple[int, int]:
    """FLOPs of one convolution_backward call's input gradient and weight gradient."""
    grad_out, x, w = event.input_shapes[:3]
    args = list(event.concrete_inputs[3:11])
    mask = args[7]
    parts = []
    for only in ([mask[0], False, False], [False, mask[1], False]):
        args[7] = only
        parts.append(conv_backward_flops(grad_out, x, w, *args, out_shape=[x, w, None]))
    return parts[0], parts[1]


def times(events, device: torch.device) -> dict[str, float]:
    """Microseconds per category, summed over the profiled steps."""
    micros = defaultdict(float)
    for event in events:
        if event.device_type != DeviceType.CPU:
            continue  # a kernel: its time is in the self device time of the op that launched it
        if event.name == "data wait":
            micros["data wait"] += event.cpu_time_total  # host time, on every device
            continue
        own = decider(event)
        if own is None or own_category(own) == "data wait":
            continue
        cpu = device.type == "cpu"
        spent = event.self_cpu_time_total if cpu else event.self_device_time_total
        category = own_category(own)
        if category == "conv backward":
            data, weight = backward_flops(own)
            share = data / (data + weight) if data + weight else 0.5
            micros["conv backward-data"] += spent * share
            micros["conv backward-weight"] += spent * (1 - share)
        else:
            micros[category] += spent
    return micros


def flops(events) -> tuple[dict[str, int], dict[str, str]]:
    """FLOPs per category over the profiled steps, and the dtype each category's convolutions
    ran in, from the shapes recorded for every convolution_backward (one per convolution).
    """
    counts, dtypes = defaultdict(int), {}
    for event in events:
        if event.name != "aten::convolution_backward":
            continue
        grad_out, x, w = event.input_shapes[:3]
        transposed = event.concrete_inputs[7]
        forward = conv_flop_count(x, w, grad_out, transposed)
        data, weight = backward_flops(event)
        kind = DTYPE_NAMES.get(event.input_dtypes[1], "32")
        if transposed:
            counts["upsampling"] += forward + data + weight
            dtypes["upsampling"] = kind
            continue
        parts = {
            "conv forward": forward,
            "conv backward-data": data,
            "conv backward-weight": weight,
        }
        for name, value in parts.items():
            counts[name] += value
            dtypes[name] = kind
    return counts, dtypes


def loader_batches(args, overrides: list[str] = ()):
    """Endless (images, masks) from the CamVid recipe's training loader at `args.root`."""
    overrides = [
        f"data.num_workers={args.workers}",
        f"data.batch_size={args.batch_size}",
        f"data.crop_size=[{args.crop[0]},{args.crop[1]}]",
        *overrides,
    ]
    datamodule = instantiate(camvid_recipe(args.root, overrides).data)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    return ((b["image"], b["mask"]) for _ in cycle([0]) for b in loader)


def batches(args, setup: Setup):
    """Endless (images, masks): the recipe's loader, or one fixed batch (--synthetic)."""
    return cycle([inputs(setup)]) if args.synthetic else loader_batches(args)


def run(args) -> tuple[list, float]:
    """Profile `args.steps` training steps after `args.warmup`; the events and wall seconds."""
    device = torch.device(args.device)
    setup = Setup(
        args.model, True, args.batch_size, tuple(args.crop), 11, args.precision,
        args.channels_last, args.device, optimizer="adamw",
    )  # fmt: skip
    model = build(args.model, 11).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_step, source = trainer_for(model, setup), batches(args, setup)

    def step() -> None:
        with record_function("data wait"):
            images, masks = next(source)
        train_step(images, masks)
        sync(device)

    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        wall = time.perf_counter() - start
    return prof.events(), wall


def table(events, wall: float, args, peaks: dict[str, float]) -> list[dict]:
    """One row per category: time per step, share of the wall time, FLOPs, rate, % of peak."""
    device = torch.device(args.device)
    micros, (counts, dtypes) = times(events, device), flops(events)
    micros["other"] += max(0.0, wall * 1e6 - sum(micros.values()))
    rows = []
    for category in CATEGORIES:
        seconds = micros.get(category, 0.0) / 1e6 / args.steps
        share = 100 * seconds * args.steps / wall
        row = {"category": category, "ms/step": 1e3 * seconds, "share %": share}
        if category in counts:
            gflop = counts[category] / args.steps / 1e9
            row.update({"GFLOP/step": gflop, "dtype": dtypes[category]})
            if seconds > 0:
                row["GFLOP/s"] = gflop / seconds
                row["% of peak"] = 100 * row["GFLOP/s"] / peaks[dtypes[category]]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CAMVID, help="CamVid in VOC layout")
    parser.add_argument("--synthetic", action="store_true", help="a fixed batch: no loader")
    parser.add_argument("--workers", type=int, default=2, help="loader workers (the recipe: 2)")
    parser.add_argument("--model", default="fcn8s/resnet18", help="arch/backbone")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--precision", choices=list(DTYPES), default=None,
                        help="default: bf16 autocast on CPU, 16 (AMP) on CUDA")  # fmt: skip
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args(argv)
    args.precision = args.precision or ("16" if args.device == "cuda" else "bf16")
    device = torch.device(args.device)
    kinds = sorted({"32", args.precision})
    before = {p: matmul_gflops(args.matmul_size, DTYPES[p], device) for p in kinds}
    events, wall = run(args)
    peaks = {p: max(before[p], matmul_gflops(args.matmul_size, DTYPES[p], device)) for p in kinds}
    rows = table(events, wall, args, peaks)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.update({"steps/s": args.steps / wall, "peak GFLOP/s": peaks})
    settings.pop("out")
    title = "Training step by category"
    report("profile", machine_info(device), settings, {title: (rows, COLUMNS)}, args.out)


if __name__ == "__main__":
    main()

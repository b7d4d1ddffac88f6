"""Roofline: achieved FLOP/s of training and inference as a fraction of the measured matmul peak.

    python -m benchmarks.roofline
    python -m benchmarks.roofline --models fcn8s/resnet18 unet/resnet34 --precisions 32 bf16

The peak is the median rate of a square ``--matmul-size`` matmul, measured before and after the
networks (the larger is kept), per dtype: fp32 and bf16 differ about 3x on CPUs with AMX. A
network's rate is its counted FLOPs per image times images/s, at the same precision.
"""

import torch

from benchmarks.common import base_parser, machine_info, median, report, time_rounds
from benchmarks.throughput import add_measure_flags, measure

DTYPES = {"32": torch.float32, "bf16": torch.bfloat16, "16": torch.float16}
PEAK_COLUMNS = ["dtype", "matmul size", "GFLOP/s before", "GFLOP/s after", "peak GFLOP/s"]
COLUMNS = [
    "model",
    "precision",
    "train GFLOP/img",
    "train img/s",
    "train GFLOP/s",
    "train % of peak",
    "infer GFLOP/img",
    "infer img/s",
    "infer GFLOP/s",
    "infer % of peak",
]


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, iters: int = 10) -> float:
    """Median GFLOP/s of an (n, n) @ (n, n) matmul in `dtype`."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = time_rounds({"mm": lambda: torch.mm(a, b)}, device, warmup=2, iters=iters)
    return 2 * n**3 / median(times["mm"]) / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fcn8s/resnet18", "fcn8s/vgg16"])
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--matmul-size", type=int, default=2048)
    add_measure_flags(parser)
    args = parser.parse_args(argv)
    args.memory = False
    device = torch.device(args.device)
    before = {p: matmul_gflops(args.matmul_size, DTYPES[p], device) for p in args.precisions}
    rows = []
    for precision in args.precisions:
        args.precision = precision
        for row in measure(args.models, args):
            rows.append({"precision": precision, **row})
    after = {p: matmul_gflops(args.matmul_size, DTYPES[p], device) for p in args.precisions}
    peaks = []
    for p in args.precisions:
        peak = max(before[p], after[p])
        peaks.append(
            {
                "dtype": p,
                "matmul size": args.matmul_size,
                "GFLOP/s before": before[p],
                "GFLOP/s after": after[p],
                "peak GFLOP/s": peak,
            }
        )
        for row in rows:
            if row["precision"] == p:
                for mode in ("train", "infer"):
                    row[f"{mode} % of peak"] = 100 * row[f"{mode} GFLOP/s"] / peak
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "precision", "memory")}
    tables = {
        "Dense matmul peak": (peaks, PEAK_COLUMNS),
        "Networks against the peak": (rows, COLUMNS),
    }
    report("roofline", machine_info(device), settings, tables, args.out)


if __name__ == "__main__":
    main()

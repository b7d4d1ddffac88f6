"""Shared pieces of the benchmarks: machine header, timing, FLOP counting, Markdown and JSON output.

Every script prints a Markdown report (header, then tables) and writes the same numbers as JSON
under ``benchmarks/results/`` (``--out`` elsewhere). Timings are medians over iterations after a
warm-up; ratios are taken within one run, alternating the contenders round by round (A B A B),
because this kind of machine drifts by up to 30 % between runs.
"""

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CAMVID = REPO.parent / "shared" / "data" / "camvid"


def cpu_model() -> str:
    """The CPU's name, family and model, and the vector units that set its speed here.

    Virtual machines often report only "AMD EPYC": the family and model tell a Zen 3 (25/1) from
    a Zen 4 (25/17), and AVX-512 and bf16 decide whether bf16 training is 2-3x faster or 11x
    slower (README, Performance).
    """
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    units = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"]
    units.append("bf16" if "avx512_bf16" in flags or "amx_bf16" in flags else "no bf16")
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" not in fields:
        return name
    family, model = fields["cpu family"], fields.get("model", "?")
    return f"{name} family {family} model {model} ({', '.join(units)})"


def machine_info(device: torch.device) -> dict[str, str | int]:
    """Where and with what the numbers were measured."""
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": str(device),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        # other work on the machine while measuring (1-minute load average at the start)
        "load_avg": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_lightning": pl.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def base_parser(description: str) -> argparse.ArgumentParser:
    """Flags every benchmark shares: device and where the JSON goes (Lightning's tips muted)."""
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=description)
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, help=f"cpu or cuda (default {default})")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/)")
    return parser


def camvid_recipe(
    root: Path, overrides: list[str], output_dir: str = ".", experiment: str = "camvid_baseline"
) -> DictConfig:
    """configs/train.yaml with a CamVid experiment for data at `root`; by default the first CPU
    recipe (batch 8, 224x288 crops at 2/3 scale), on which the benchmarks' tables were taken."""
    if not (root / "ImageSets").is_dir():
        raise SystemExit(
            f"{root} is not a VOC-layout CamVid tree (no ImageSets/); pass --root with the "
            f"CamVid folder (../shared/data/camvid beside the repository on dev machines)"
        )
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train",
            [
                f"experiment={experiment}",
                f"data.root={root}",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
        )


def sync(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU, fp16/bf16 AMP on CUDA, nothing for fp32."""
    if precision == "32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def time_rounds(
    steps: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    iters: int,
    per_round: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each step, alternating contenders every `per_round` calls."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(max(1, iters // per_round)):
        for name, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                sync(device)
                times[name].append(time.perf_counter() - start)
    return times


def intervals(ends: list[float], skip: int) -> list[float]:
    """Durations between consecutive step-end times, leaving out the first `skip` steps."""
    skip = min(skip, max(0, len(ends) - 2))
    return [b - a for a, b in zip(ends[skip:-1], ends[skip + 1 :], strict=True)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def swap01(shape: list[int]) -> list[int]:
    return [shape[1], shape[0], *shape[2:]]


def conv_backward_flops(grad_out_shape, x_shape, w_shape, *args, out_shape, **kwargs) -> int:
    """torch's count for a convolution's backward, with the weight gradient of a grouped
    convolution divided by its groups (torch 2.14 counts it as if ungrouped: 32x too many FLOPs
    for a depthwise 3x3 over 32 channels, and 20x the forward for MobileNetV3).
    """
    (_bias, _stride, _padding, _dilation, transposed, _output_padding, groups, mask) = args
    flops = 0
    if mask[0]:  # grad_input: a (transposed) convolution of grad_out with the weight
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if mask[1]:  # grad_weight: a convolution of the input with grad_out, per group
        x, g = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(swap01(x), swap01(g), swap01(out_shape[1])) // groups
    return flops


def count_flops(model: nn.Module, images: torch.Tensor, train: bool) -> int:
    """FLOPs (2 per multiply-add) of one forward, or forward + backward when `train`."""
    model.train(train)
    fixed = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=fixed) as counter:
        if train:
            model(images).float().sum().backward()
        else:
            with torch.no_grad():
                model(images)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `columns` from dict rows; floats get 3 significant figures."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, info: dict, settings: dict, tables: dict[str, tuple], out: Path | None):
    """Print the Markdown report, write it beside the JSON of {info, settings, tables}.

    `tables` maps a title to (rows, columns).
    """
    header = ", ".join(f"{k} {v}" for k, v in info.items())
    lines = [f"## {name}", "", f"_{header}_", "", "Settings: " + json.dumps(settings), ""]
    for title, (rows, columns) in tables.items():
        lines += [f"### {title}", "", markdown_table(rows, columns), ""]
    print("\n".join(lines), flush=True)
    out = out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines))
    data = {"benchmark": name, "machine": info, "settings": settings}
    data["tables"] = {title: rows for title, (rows, _) in tables.items()}
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"Wrote {out}")
    return out

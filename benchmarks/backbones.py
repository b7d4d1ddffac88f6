"""The backbone menu: parameters, FLOPs, train and inference images/s, pretrained weights.

    python -m benchmarks.backbones                          # torchvision and timm menus
    python -m benchmarks.backbones --backbones resnet18 timm:efficientnet_b0 --crop 96 96
    python -m benchmarks.backbones --render            # results/backbones.json -> the docs' table

Every backbone runs under FCN-8s (21 classes) at --crop (128x128 by default, batch 2, fp32), so
the rows compare encoders; a ViT's row includes its feature pyramid. Train and inference
images/s are medians of a few steps, the networks alternated step by step (A B A B) within each
mode; FLOPs are per image at the crop (2 per multiply-add; train counts forward and backward).
"pretrained" names the weights ``model.weights=imagenet`` loads (torchvision's DEFAULT, timm's
default tag and, where it is not ImageNet's, the normalisation they expect), not whether they
are downloaded on this machine. The results JSON is rendered in docs/backbones.md.
"""

import json
import re
from pathlib import Path

import timm
import torch
import torchvision

from benchmarks.common import (
    REPO,
    RESULTS,
    base_parser,
    count_flops,
    machine_info,
    markdown_table,
    median,
    report,
    time_rounds,
)
from benchmarks.steps import Setup, make_step
from benchmarks.zoo import build
from seg.imagenet import IMAGENET_MEAN, IMAGENET_STD
from seg.models import count_parameters

TORCHVISION = ["vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"]
TIMM = [
    "timm:resnet50d",
    "timm:convnext_tiny",
    "timm:efficientnet_b0",
    "timm:regnety_016",
    "timm:mobilenetv4_conv_small",
    "timm:vit_small_patch14_dinov2",
    "timm:vit_small_patch16_224",
]
DOCS = REPO / "docs" / "backbones.md"
MARKS = (
    "<!-- menu table: python -m benchmarks.backbones --render -->",
    "<!-- end of menu table -->",
)
OWN = ("unet", "tiny")  # seg's own encoders: no ImageNet weights
ARCH = "fcn8s"
COLUMNS = ["backbone", "library", "strides", "params (M)", "FCN-8s params (M)", "infer GFLOP/img",
           "train GFLOP/img", "train img/s", "infer img/s", "pretrained"]  # fmt: skip


def library(backbone: str) -> str:
    return "timm" if backbone.startswith("timm:") else "seg" if backbone in OWN else "torchvision"


def pretrained(backbone: str) -> str:
    """The weights model.weights=imagenet loads for ``backbone``, or 'none'."""
    if not backbone.startswith("timm:"):
        try:
            return f"ImageNet-1k {torchvision.models.get_model_weights(backbone).DEFAULT.name}"
        except ValueError:
            return "none"
    cfg = timm.get_pretrained_cfg(backbone.removeprefix("timm:"))
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return "none"
    norm = (tuple(cfg.mean), tuple(cfg.std)) != (IMAGENET_MEAN, IMAGENET_STD)
    return cfg.tag + (f" (mean {cfg.mean}, std {cfg.std})" if norm else "")


def describe(backbone: str, model: torch.nn.Module, crop: tuple[int, int]) -> dict:
    """Size, strides, FLOPs per image and weights of one FCN-8s network."""
    images = torch.randn(1, 3, *crop)
    strides = sorted(model.backbone.channels)
    return {
        "backbone": backbone,
        "library": library(backbone),
        "strides": f"{strides[0]}-{strides[-1]}",
        "params (M)": count_parameters(model.backbone) / 1e6,
        "FCN-8s params (M)": count_parameters(model) / 1e6,
        "infer GFLOP/img": count_flops(model, images, train=False) / 1e9,
        "train GFLOP/img": count_flops(model, images, train=True) / 1e9,
        "pretrained": pretrained(backbone),
    }


def setup(backbone: str, train: bool, args) -> Setup:
    return Setup(f"{ARCH}/{backbone}", train, args.batch_size, tuple(args.crop), args.num_classes,
                 args.precision, device=args.device)  # fmt: skip


def measure(backbones: list[str], args) -> list[dict]:
    """One row per backbone; within each mode the networks take turns, step by step."""
    models = {b: build(f"{ARCH}/{b}", args.num_classes) for b in backbones}
    rows = {b: describe(b, models[b], tuple(args.crop)) for b in backbones}
    device = torch.device(args.device)
    for mode, train in (("train", True), ("infer", False)):
        steps = {b: make_step(setup(b, train, args), models[b]) for b in backbones}
        times = time_rounds(steps, device, args.warmup, args.iters)
        for b in backbones:
            rows[b][f"{mode} img/s"] = args.batch_size / median(times[b])
    return list(rows.values())


def render(results: Path, docs: Path = DOCS) -> None:
    """Write the table of ``results`` with its machine line between the docs' two marks."""
    data = json.loads(results.read_text())
    (rows,) = data["tables"].values()
    machine = ", ".join(f"{k} {v}" for k, v in data["machine"].items())
    settings = ", ".join(f"{k} {data['settings'][k]}" for k in ("crop", "batch_size", "precision"))
    table = f"_{machine}; {settings}_\n\n{markdown_table(rows, COLUMNS)}"
    start, end = (re.escape(mark) for mark in MARKS)
    text = re.sub(f"{start}.*?{end}", lambda _: f"{MARKS[0]}\n{table}\n{MARKS[1]}",
                  docs.read_text(), flags=re.S)  # fmt: skip
    docs.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=TORCHVISION + TIMM)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--crop", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--precision", choices=["32", "bf16", "16"], default="32")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per network and mode")
    parser.add_argument("--render", action="store_true", help=f"only render the JSON into {DOCS}")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.out or RESULTS / "backbones.json")
    rows = measure(args.backbones, args)
    settings = {k: v for k, v in vars(args).items() if k != "out"} | {"arch": ARCH}
    info = machine_info(torch.device(args.device)) | {"timm": timm.__version__}
    title = f"Backbones under {ARCH}, {args.crop[0]}x{args.crop[1]}, batch {args.batch_size}"
    report("backbones", info, settings, {title: (rows, COLUMNS)}, args.out)


if __name__ == "__main__":
    main()

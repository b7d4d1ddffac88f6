"""Framework overhead: one network trained by a bare PyTorch loop and by our module and Trainer.

    python -m benchmarks.overhead
    python -m benchmarks.overhead --rounds 5 --steps 20

Same network (fcn8s/resnet18, random init), batch, precision, layout and in-memory batches. The
contenders run alternately, ``--steps`` steps each per round. "step s" is the median time between
the ends of consecutive steps (data fetch, hooks and logging included); "run s" is a whole
round from the start, Trainer set-up included.
"""

import tempfile
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import LearningRateMonitor, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from benchmarks.common import autocast, base_parser, intervals, machine_info, median, report
from seg.module import SegmentationModule

COLUMNS = ["loop", "step s", "img/s", "speed vs bare", "run s"]


class StepClock(pl.Callback):
    """Record the time at the end of every training step."""

    def __init__(self, ends: list[float]):
        self.ends = ends

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def batches(args) -> list[dict[str, torch.Tensor]]:
    """`--steps` samples worth of batches, held in memory: ImageNet-like images and masks."""
    g = torch.Generator().manual_seed(0)
    n, (h, w) = args.steps * args.batch_size, args.crop
    images = torch.randn(n, 3, h, w, generator=g)
    masks = torch.randint(0, args.num_classes, (n, h, w), generator=g)
    return [{"image": images[i], "mask": masks[i]} for i in range(n)]


def bare_loop(module: SegmentationModule, loader: DataLoader, args, ends: list[float]) -> None:
    """Plain PyTorch: autocast forward, fp32 loss, backward, SGD with momentum, poly LR per step."""
    model, device = module.model, torch.device(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - it / args.steps) ** 0.9)
    model.train()
    for batch in loader:
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with autocast(device, args.precision):
            logits = model(images)
        F.cross_entropy(logits.float(), masks, ignore_index=255).backward()
        opt.step()
        sched.step()
        ends.append(time.perf_counter())


def lightning_loop(module, loader, args, ends: list[float], defaults: bool) -> None:
    """Our SegmentationModule under a Trainer; `defaults` adds the project's logging callbacks."""
    extra, logger = [], False
    tmp = tempfile.TemporaryDirectory()
    if defaults:  # configs/logger/tensorboard.yaml and the per-step parts of callbacks/default
        logger = TensorBoardLogger(tmp.name, name="tensorboard", version="")
        extra = [LearningRateMonitor(logging_interval="step"), TQDMProgressBar(refresh_rate=1)]
    precision = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[args.precision]
    trainer = pl.Trainer(
        accelerator=args.device,
        devices=1,
        max_steps=args.steps,
        precision=precision,
        logger=logger,
        callbacks=[StepClock(ends), *extra],
        enable_checkpointing=False,
        enable_progress_bar=defaults,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, train_dataloaders=loader)
    tmp.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn8s/resnet18", help="arch/backbone")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--precision", choices=["32", "bf16", "16"], default=None)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--steps", type=int, default=12, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of each round")
    args = parser.parse_args(argv)
    args.precision = args.precision or ("16" if args.device == "cuda" else "bf16")
    arch, backbone = args.model.split("/")
    loader = DataLoader(batches(args), batch_size=args.batch_size, shuffle=True)
    contenders = {
        "bare PyTorch": lambda m, ends: bare_loop(m, loader, args, ends),
        "Lightning, no logger": lambda m, ends: lightning_loop(m, loader, args, ends, False),
        "Lightning, TensorBoard + progress bar": lambda m, ends: lightning_loop(
            m, loader, args, ends, True
        ),
    }
    torch.manual_seed(0)
    modules = {
        name: SegmentationModule(
            arch, backbone, args.num_classes, weights=None, channels_last=args.channels_last
        ).to(args.device)
        for name in contenders
    }
    steps = {name: [] for name in contenders}
    runs = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            ends, start = [], time.perf_counter()
            run(modules[name], ends)
            runs[name].append(time.perf_counter() - start)
            steps[name] += intervals(ends, args.warmup)
    bare = median(steps["bare PyTorch"])
    rows = [
        {
            "loop": name,
            "step s": median(steps[name]),
            "img/s": args.batch_size / median(steps[name]),
            "speed vs bare": bare / median(steps[name]),
            "run s": median(runs[name]),
        }
        for name in contenders
    ]
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report(
        "overhead",
        machine_info(torch.device(args.device)),
        settings,
        {"Bare loop vs our module and Trainer": (rows, COLUMNS)},
        args.out,
    )


if __name__ == "__main__":
    main()

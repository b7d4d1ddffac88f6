"""Data pipeline: CamVid samples/s from the DataLoader alone against what training consumes.

    python -m benchmarks.data_pipeline                      # ../shared/data/camvid, 0/1/2 workers
    python -m benchmarks.data_pipeline --root data/camvid --workers 2 4

The loader is the project's ``SegmentationDataModule`` with the CamVid recipe's augmentation
(configs/experiment/camvid.yaml: images scaled to about 2/3, 224x288 crops, flips): JPEG and
PNG decoding, scaling, cropping and normalising. Training consumption is ``--model`` images/s on
an in-memory batch; "fed by the loader" trains the same network on the loader's batches.
Loader, in-memory training and fed training alternate round by round.
"""

import time
from itertools import islice
from pathlib import Path

import torch
from hydra.utils import instantiate

from benchmarks.common import (
    CAMVID,
    base_parser,
    camvid_recipe,
    machine_info,
    median,
    report,
    sync,
    time_rounds,
)
from benchmarks.steps import Setup, make_step, trainer_for
from benchmarks.zoo import build
from seg.data import SegmentationDataModule

COLUMNS = ["what", "workers", "samples/s", "x training consumption", "first batch s"]


def datamodule(args, workers: int) -> SegmentationDataModule:
    """The CamVid recipe's training data with `workers` loader workers."""
    overrides = [f"data.num_workers={workers}", f"data.batch_size={args.batch_size}"]
    overrides.append(f"data.crop_size=[{args.crop[0]},{args.crop[1]}]")
    dm = instantiate(camvid_recipe(args.root, overrides).data)
    dm.setup("fit")
    return dm


def time_batches(loader, batches: int, on_batch=None) -> tuple[float, list[float]]:
    """Seconds to the first batch of a fresh epoch, and per batch after it."""
    start = time.perf_counter()
    times = []
    for batch in islice(iter(loader), batches + 1):
        if on_batch is not None:
            on_batch(batch)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times[0], times[1:]


def measure(args) -> tuple[dict, dict]:
    """Per-batch seconds and first-batch latencies: each loader, in-memory and fed training."""
    device = torch.device(args.device)
    loaders = {w: datamodule(args, w).train_dataloader() for w in args.workers}
    default_loader = datamodule(args, args.default_workers).train_dataloader()
    setup = Setup(
        args.model,
        True,
        args.batch_size,
        tuple(args.crop),
        11,
        args.precision,
        channels_last=True,
        device=args.device,
    )
    model = build(args.model, 11)
    in_memory, train_step = make_step(setup, model), trainer_for(model, setup)

    def fed(batch: dict[str, torch.Tensor]) -> None:
        train_step(batch["image"], batch["mask"])
        sync(device)

    times = {w: [] for w in args.workers} | {"memory": [], "fed": []}
    first = {w: [] for w in args.workers} | {"fed": []}
    in_memory()  # warm-up
    for _ in range(args.rounds):
        for w, loader in loaders.items():
            latency, per_batch = time_batches(loader, args.batches)
            first[w].append(latency)
            times[w] += per_batch
        times["memory"] += time_rounds({"m": in_memory}, device, 0, args.batches)["m"]
        latency, per_batch = time_batches(default_loader, args.batches, on_batch=fed)
        first["fed"].append(latency)
        times["fed"] += per_batch
    return times, first


def table(args, times: dict, first: dict) -> list[dict]:
    consumed = args.batch_size / median(times["memory"])
    entries = [("training consumes (in-memory batch)", "", "memory")]
    entries += [("loader alone", w, w) for w in args.workers]
    entries += [("training fed by the loader", args.default_workers, "fed")]
    rows = []
    for what, workers, key in entries:
        rate = args.batch_size / median(times[key])
        rows.append(
            {
                "what": what,
                "workers": workers,
                "samples/s": rate,
                "x training consumption": rate / consumed,
            }
        )
        if key in first:
            rows[-1]["first batch s"] = median(first[key])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CAMVID, help="a VOC-layout CamVid tree")
    parser.add_argument("--model", default="fcn8s/resnet18", help="the consuming network")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--default-workers", type=int, default=2, help="configs/data/voc.yaml")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, default=8, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    args.precision = "16" if args.device == "cuda" else "bf16"
    rows = table(args, *measure(args))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    del settings["out"]
    report(
        "data_pipeline",
        machine_info(torch.device(args.device)),
        settings,
        {"DataLoader against training": (rows, COLUMNS)},
        args.out,
    )


if __name__ == "__main__":
    main()

"""Memory across a long run: resident memory (RSS) of training and its loader workers per epoch.

    python -m benchmarks.memory_growth               # 20 epochs, FCN-8s/ResNet-18, VOC sample
    python -m benchmarks.memory_growth --epochs 100 --override model.backbone=tiny

The run is the real ``train.py`` machinery: default callbacks (best/periodic/step checkpoints,
the data check), TensorBoard with its images and confusion-matrix figures, two persistent loader
workers. Memory is read from /proc after each epoch, once validation and checkpointing are done:
the main process's RSS, and PSS (shared pages divided among the processes sharing them) for the
total, since forked workers share most of their pages with the main process. The first epochs
grow while allocators, workers and caches warm up; a leak keeps growing after that, so the
report gives the slope over the second half of the run in MiB per epoch.
"""

import gc
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.common import base_parser, machine_info, report
from train import build_module, build_trainer

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["epoch", "seconds", "main RSS MiB", "main PSS MiB", "workers PSS MiB", "total MiB",
           "Δ total MiB", "python objects"]  # fmt: skip


def memory_mib(pid: int | str = "self") -> dict[str, float]:
    """{"Rss", "Pss"} of a process in MiB from /proc/<pid>/smaps_rollup; zeros if it is gone."""
    sizes = {"Rss": 0.0, "Pss": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":")[0]
            if key in sizes:
                sizes[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return sizes


def child_pids() -> list[int]:
    """Direct children of this process (loader workers), from every thread's children list."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


class MemoryProbe(pl.Callback):
    """Record RSS, worker RSS and live Python objects after every training epoch."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        gc.collect()
        main = memory_mib()
        workers = sum(memory_mib(pid)["Pss"] for pid in child_pids())
        total = main["Pss"] + workers
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "seconds": time.perf_counter() - self.start,
            "main RSS MiB": main["Rss"],
            "main PSS MiB": main["Pss"],
            "workers PSS MiB": workers,
            "total MiB": total,
            "Δ total MiB": total - (self.rows[0]["total MiB"] if self.rows else total),
            "python objects": len(gc.get_objects()),
        })  # fmt: skip


def slope(values: list[float]) -> float:
    """Least-squares change per step of a series (MiB per epoch); 0 for fewer than 2 points."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    cov = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return cov / sum((i - mean_x) ** 2 for i in range(n))


def measure(args, out: str) -> list[dict]:
    """Train for args.epochs with the probe attached; return its rows."""
    overrides = [f"data.root={args.root}", f"trainer.max_epochs={args.epochs}",
                 f"trainer.accelerator={args.device}", "~callbacks.progress",
                 "++trainer.enable_progress_bar=false", f"paths.output_dir={out}",
                 *args.override]  # fmt: skip
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg)
    probe = MemoryProbe()
    trainer.callbacks.append(probe)
    trainer.fit(module, datamodule=datamodule)
    return probe.rows


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "data" / "VOCdevkit" / "VOC2012")
    parser.add_argument("--epochs", type=int, default=20)
    default = ["model.backbone=resnet18", "model.weights=null", "data.crop_size=128",
               "data.batch_size=4"]  # fmt: skip
    parser.add_argument("--override", nargs="*", default=default, help="Hydra overrides")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        rows = measure(args, out)
    later = rows[len(rows) // 2 :]  # after the warm-up
    summary = [{"epochs": len(rows), "first epoch total MiB": rows[0]["total MiB"],
                "last epoch total MiB": rows[-1]["total MiB"]}]  # fmt: skip
    for column in ("main RSS MiB", "workers PSS MiB", "total MiB"):
        name = column.removesuffix(" MiB")
        summary[0][f"{name}, 2nd half (MiB/epoch)"] = slope([row[column] for row in later])
    settings = {"root": str(args.root), "epochs": args.epochs, "overrides": args.override}
    tables = {
        "RSS after each epoch": (rows, COLUMNS),
        "Growth": (summary, list(summary[0])),
    }
    report("memory_growth", machine_info(torch.device(args.device)), settings, tables, args.out)


if __name__ == "__main__":
    main()

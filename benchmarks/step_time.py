"""Seconds per training step of CamVid configurations, loader included, A B A B in one run.

    python -m benchmarks.step_time --rounds 2 --steps 30 -- "" "model.backbone=mobilenet_v3_large"

Each configuration is the experiment (``experiment=camvid`` by default) plus its overrides (one
quoted string per configuration; "" is the experiment itself). A round trains every configuration
in turn for ``--steps`` steps, as train.py builds it (data loader workers, augmentation,
precision), and times the intervals between step ends after the first ``--skip``; rounds repeat
in the same order, so a background job slows both alike. The table gives each configuration's
median seconds per step over all rounds and its ratio to the first: the number that turns a step
count of one configuration into the same minutes of another (``benchmarks.cv --steps``).
"""

import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from benchmarks.common import CAMVID, base_parser, camvid_recipe, intervals, machine_info, median
from benchmarks.common import report as write_report
from train import build_module, build_trainer

TITLE = "Seconds per training step, loader included"


class StepClock(pl.Callback):
    """The time at each training step's end."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.ends.append(time.perf_counter())


def seconds_per_step(args, overrides: list[str]) -> list[float]:
    """One fit of ``args.steps`` steps; the step intervals after ``args.skip``."""
    common = [
        "callbacks=none", "~logger", "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false", f"trainer.accelerator={args.device}",
        f"trainer.max_steps={args.steps}", "trainer.max_epochs=-1", "trainer.budget=null",
        "trainer.limit_val_batches=0", "seed=0", *overrides,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        cfg = camvid_recipe(args.root, common, out, args.experiment)
        pl.seed_everything(0, workers=True)
        datamodule = instantiate(cfg.data)
        module, trainer = build_module(cfg, datamodule), build_trainer(cfg)
        clock = StepClock()
        trainer.callbacks.append(clock)
        trainer.fit(module, datamodule=datamodule)
    return intervals(clock.ends, args.skip)


def in_fresh_process(args, overrides: list[str]) -> list[float]:
    """``seconds_per_step`` in a new process: nothing of one fit (loader workers, allocator
    caches, threads) is left to the next."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(seconds_per_step, args, overrides).result()


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="overrides per configuration, one string each")
    parser.add_argument("--experiment", default="camvid")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5, help="start-up steps left out")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", default=CAMVID)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {c: [] for c in args.configs}
    for _ in range(args.rounds):
        for config in args.configs:
            times[config] += in_fresh_process(args, config.split())
            print(f"{config or args.experiment}: {median(times[config]):.3f} s/step", flush=True)
    first = median(times[args.configs[0]])
    rows = [
        {"configuration": c or f"experiment={args.experiment}", "s/step": round(median(t), 3),
         "ratio": round(median(t) / first, 3), "steps timed": len(t)}
        for c, t in times.items()
    ]  # fmt: skip
    info = machine_info(torch.device(args.device))
    settings = {"experiment": args.experiment, "steps": args.steps, "skip": args.skip,
                "rounds": args.rounds, "threads": torch.get_num_threads()}  # fmt: skip
    columns = ["configuration", "s/step", "ratio", "steps timed"]
    write_report("step_time", info, settings, {TITLE: (rows, columns)}, args.out)


if __name__ == "__main__":
    main()

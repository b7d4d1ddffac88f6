"""The allocator lever: the recipe's step in child processes with and without an LD_PRELOAD.

A preloaded malloc (tcmalloc, jemalloc) must be in place before the process starts, so each arm
runs in its own child (``python -m benchmarks.levers --child ...``), A and B alternately,
``--rounds`` times each; a child reports the seconds of each timed step.
"""

import ctypes.util
import json
import os
import subprocess
import sys

from benchmarks.common import REPO, median, sync

# name -> (library for ctypes.util.find_library, the Debian package that installs it)
LIBRARIES = {
    "tcmalloc": ("tcmalloc_minimal", "libtcmalloc-minimal4"),
    "jemalloc": ("jemalloc", "libjemalloc2"),
}
MARK = "STEP_SECONDS "


def child(args, step) -> None:
    """Run the step `args.warmup` + `args.iters` times; print the timed steps' seconds."""
    import time

    import torch

    device = torch.device(args.device)
    for _ in range(args.warmup):
        step()
    sync(device)
    seconds = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    print(MARK + json.dumps(seconds), flush=True)


def child_command(args) -> list[str]:
    """The levers command line of one child arm, with the same step settings."""
    command = [sys.executable, "-m", "benchmarks.levers", "--child", "--device", args.device]
    command += ["--model", args.model, "--batch-size", str(args.batch_size)]
    command += ["--crop", *map(str, args.crop), "--precision", args.precision]
    command += ["--warmup", str(args.warmup), "--iters", str(args.iters)]
    return command + ([] if args.channels_last else ["--no-channels-last"])


def run_child(args, preload: str | None) -> float:
    """Median step seconds of one child, with `preload` as LD_PRELOAD (None: glibc malloc)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    done = subprocess.run(
        child_command(args), cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise RuntimeError(f"the allocator child failed ({preload}):\n{done.stderr[-2000:]}")
    return median(json.loads(lines[-1][len(MARK) :]))


def find(name: str) -> str | None:
    """The shared library to preload for allocator `name`, or None when it is not installed."""
    return ctypes.util.find_library(LIBRARIES[name][0])


def rounds(args, preload: str) -> tuple[list[float], list[float]]:
    """Per-round median step seconds of A (glibc malloc) and B (`preload`), alternating."""
    a, b = [], []
    for _ in range(args.rounds):
        a.append(run_child(args, None))
        b.append(run_child(args, preload))
    return a, b

"""Probe this device: seconds per training step (and peak memory) of a few candidate setups.

Each candidate (network, crop, batch) trains on a fixed random batch of the data's shape:
the real network from ``seg.models.build_model``, cross-entropy ignoring 255, backward and an
AdamW step (the recipe's optimizer), in the precision this device trains in (fp32 on a CPU
without bf16 instructions, bf16 where it has them, bf16/fp16 on CUDA). One step warms up, the
next ``STEPS`` are timed, and the median is kept. Candidates run from cheapest to dearest until
``seconds`` (about two minutes) are spent; those left are estimated from the measured seconds
per pixel of the same network, and marked so.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on a CPU the rise of the process's
peak resident memory (``VmHWM``) over its size before the probe, which only grows, so a
candidate's number is the peak of it and every cheaper one.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from seg.models import build_model
from seg.training import cpu_has_bf16

STEPS = 2
ARCH = "fcn8s"


@dataclass(frozen=True)
class Candidate:
    backbone: str
    crop: tuple[int, int]  # (height, width)
    batch_size: int


@dataclass
class Timing:
    candidate: Candidate
    seconds_per_step: float
    peak_mb: float | None
    measured: bool  # False: estimated from a measured candidate of the same network

    def as_dict(self) -> dict:
        return asdict(self)


def precision(device: str) -> str:
    """What trainer.precision=auto-mixed trains in on this device: bf16, fp16 or fp32."""
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def time_steps(candidate: Candidate, channels: int, classes: int, device: str) -> float:
    """Median seconds of STEPS training steps after one warm-up step."""
    model = build_model(ARCH, candidate.backbone, classes, in_channels=channels).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    (h, w), n = candidate.crop, candidate.batch_size
    images = torch.randn(n, channels, h, w, generator=g).to(device)
    masks = torch.randint(0, classes, (n, h, w), generator=g).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(device))
    times = []
    for _ in range(STEPS + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images.contiguous(memory_format=torch.channels_last))
        F.cross_entropy(logits.float(), masks, ignore_index=255).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def cost(candidate: Candidate) -> int:
    return candidate.crop[0] * candidate.crop[1] * candidate.batch_size


def probe(
    candidates: list[Candidate], channels: int, classes: int, seconds: float = 120.0
) -> list[Timing]:
    """Timings of the candidates, cheapest first; unmeasured ones estimated by pixels."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base, start = peak_mb(device), time.monotonic()
    timings, rate = [], {}  # backbone -> seconds per pixel
    for candidate in sorted(candidates, key=lambda c: (cost(c), c.backbone)):
        if time.monotonic() - start < seconds or candidate.backbone not in rate:
            step = time_steps(candidate, channels, classes, device)
            rate[candidate.backbone] = step / cost(candidate)
            used = peak_mb(device) - (0 if device == "cuda" else base)
            timings.append(Timing(candidate, round(step, 4), round(used, 1), True))
        else:
            step = rate[candidate.backbone] * cost(candidate)
            timings.append(Timing(candidate, round(step, 4), None, False))
    return timings

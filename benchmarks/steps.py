"""One training or inference step of a network as a closure, and its peak memory in a fresh process.

A training step is what the project's module does per batch: forward, per-pixel cross-entropy
(ignore 255) in fp32, backward, SGD with momentum (or the CamVid recipe's AdamW, with any of
torch's optimizer implementations). Inference runs under ``torch.inference_mode``.
Both honour ``precision`` ("32", "bf16" autocast on CPU or CUDA, "16" AMP on CUDA) and
``channels_last``.
"""

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import autocast, sync
from benchmarks.zoo import build
from seg.module import optimizer_impl_kwargs


@dataclass
class Setup:
    """What one measurement runs: network name, mode, batch, crop, precision, layout, device."""

    name: str
    train: bool
    batch_size: int = 8
    crop: tuple[int, int] = (224, 288)
    num_classes: int = 21
    precision: str = "32"
    channels_last: bool = False
    device: str = "cpu"
    optimizer: str = "sgd"  # or "adamw": lr 2e-3, weight decay 1e-4 (the CamVid recipe)
    optimizer_impl: str = "auto"  # seg.config.OPTIMIZER_IMPLS


def optimizer_for(model: nn.Module, setup: Setup) -> torch.optim.Optimizer:
    """SGD as in the paper recipes, or AdamW as in the CamVid recipe."""
    impl = optimizer_impl_kwargs(setup.optimizer_impl)
    if setup.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4, **impl)
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, **impl)


def inputs(setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch: images (N, 3, H, W) and masks (N, H, W) with some 255 pixels."""
    g = torch.Generator().manual_seed(0)
    n, (h, w) = setup.batch_size, setup.crop
    images = torch.randn(n, 3, h, w, generator=g)
    masks = torch.randint(0, setup.num_classes, (n, h, w), generator=g)
    masks[:, :4] = 255
    device = torch.device(setup.device)
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format
    return images.to(device, memory_format=memory_format), masks.to(device)


def trainer_for(model: nn.Module, setup: Setup) -> Callable[[Tensor, Tensor], None]:
    """A function training `model` one step on (images, masks) as `setup` says."""
    device = torch.device(setup.device)
    optimizer = optimizer_for(model, setup)
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision == "16")
    memory_format = torch.channels_last if setup.channels_last else torch.contiguous_format

    def train_step(images: Tensor, masks: Tensor) -> None:
        images = images.to(device, memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, setup.precision):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks.to(device).long(), ignore_index=255)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return train_step


def make_step(setup: Setup, model: nn.Module | None = None) -> Callable[[], None]:
    """One step of `setup` on a fixed batch, as a closure (builds the network unless given)."""
    device = torch.device(setup.device)
    model = (build(setup.name, setup.num_classes) if model is None else model).to(device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(setup.train)
    images, masks = inputs(setup)
    if setup.train:
        train_step = trainer_for(model, setup)
        return lambda: train_step(images, masks)

    def infer() -> None:
        with torch.inference_mode(), autocast(device, setup.precision):
            model(images)

    return infer


def rss_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _probe(fields: dict, steps: int) -> float:
    setup = Setup(**fields)
    device = torch.device(setup.device)
    base = rss_kb("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = make_step(setup)
    for _ in range(steps):
        step()
    sync(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (rss_kb("VmHWM") - base) / 1024


def peak_memory_mb(setup: Setup, steps: int = 2) -> float:
    """Peak memory (MiB) of `steps` steps in a fresh process: weights, gradients, optimizer state
    and activations. CPU: the rise of peak RSS over the process's RSS after imports; CUDA:
    ``torch.cuda.max_memory_allocated``.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_probe, asdict(setup), steps).result()

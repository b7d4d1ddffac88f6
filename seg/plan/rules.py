"""Rules from a fingerprint and a probe to a plan: each choice with the number that decided it.

The rules and the experiment behind each are in docs/plan.md. They are functions of the
fingerprint and the probe's timings only (no clock, no randomness), so the same two give the
same plan. Choices are ``Choice(key, value, why)`` with dotted config keys (``model.lr``);
``assumed`` holds what the plan guessed, each with the override that changes it.
"""

import math
from dataclasses import dataclass, field

from seg.errors import ConfigError
from seg.plan.fingerprint import Fingerprint
from seg.plan.probe import Candidate, Timing

THIN = 16  # px: the thinnest class keeps at least two cells of FCN-8s's stride-8 scores
MIN_FACTOR = 0.5  # never train below half resolution
CROP_SHARE = 0.8  # of the (scaled) image side: CamVid's 288x384 of 360x480
MAX_CROP = 512  # px per side on a CPU
MIN_EPOCHS = 8  # the CamVid recipe's 20 minutes on a Zen 3 CPU in fp32: about 9 epochs
VAL_SHARE = 0.1  # of the budget spent validating
# preferred first: every MobileNetV3-Large row beat every ResNet-18 row of the CamVid
# cross-validation on held-out streets (docs/recipes.md, benchmarks/results/cv.md)
BACKBONES = ("mobilenet_v3_large", "resnet18")
BATCH = 4  # the CamVid recipe (benchmarks/results/recipe.md, +batch4)
OHEM_SHARE = 0.226  # ohem_min_kept per batch pixel: the recipe's 100,000 of 4 x 288 x 384
IMBALANCE = 10  # largest / smallest class share from which OHEM and class weights apply


@dataclass(frozen=True)
class Choice:
    key: str
    value: object
    why: str


@dataclass
class Plan:
    choices: list[Choice] = field(default_factory=list)
    assumed: list[tuple[str, str]] = field(default_factory=list)  # (what, override)
    estimate: dict = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)  # made split lists, to write

    def add(self, key: str, value, why: str) -> None:
        self.choices.append(Choice(key, value, why))

    def value(self, key: str):
        return next(c.value for c in self.choices if c.key == key)


def thinnest(fp: Fingerprint) -> tuple[str, float] | None:
    """(class name, thickness px) of the thinnest class found in the sampled masks."""
    found = [(t, n) for n, t in zip(fp.class_names, fp.thickness, strict=True) if t is not None]
    return (min(found)[1], min(found)[0]) if found else None


def resolution(fp: Fingerprint) -> tuple[float, str]:
    """The factor images are trained and evaluated at, and why."""
    thin = thinnest(fp)
    if thin is None:
        return 1.0, "no class found in the sampled masks: native resolution"
    name, px = thin
    factor = max(MIN_FACTOR, min(1.0, THIN / px))
    factor = math.floor(factor * 20) / 20  # steps of 0.05: small changes of a median stay put
    return factor, f"thinnest class {name}: median thickness {px:g} px, kept >= {THIN} px"


def crop_side(side: float) -> int:
    return int(max(32, min(MAX_CROP, CROP_SHARE * side) // 32 * 32))


def candidates(fp: Fingerprint, factor: float) -> list[Candidate]:
    """Each network at the full crop and at 3/4 and 9/16 of its sides (multiples of 32)."""
    h, w = (factor * s for s in fp.size)
    crops = {(crop_side(h * r), crop_side(w * r)) for r in (1.0, 0.75, 0.5625)}
    n = len(fp.train_ids) if fp.val_ids else len(fp.train_ids) - round(0.2 * len(fp.train_ids))
    batch = batch_size(n)  # without a val split the plan holds out about 20 %
    return [Candidate(b, c, batch) for b in BACKBONES for c in sorted(crops, reverse=True)]


def batch_size(train_images: int) -> int:
    """The recipe's 4, or fewer so that a batch holds at most half the training images."""
    return max(1, min(BATCH, train_images // 2))


def validation_seconds(fp: Fingerprint, timing: Timing, factor: float, flip: bool) -> float:
    """One validation: a forward pass is about a third of a training step, per pixel."""
    c = timing.candidate
    per_pixel = timing.seconds_per_step / 3 / (c.crop[0] * c.crop[1] * c.batch_size)
    pixels = fp.size[0] * fp.size[1] * factor**2
    return (
        len(fp.val_ids or fp.train_ids[: len(fp.train_ids) // 5])
        * pixels
        * per_pixel
        * (2 if flip else 1)
    )


def epochs(fp: Fingerprint, timing: Timing, budget: float) -> float:
    """Training epochs that (1 - VAL_SHARE) of the budget holds."""
    steps = (1 - VAL_SHARE) * budget / timing.seconds_per_step
    return steps * timing.candidate.batch_size / len(fp.train_ids)


def minimum_budget(fp: Fingerprint, timing: Timing, factor: float) -> float:
    """Seconds for the budget's warm-up (at least 10 steps) or one epoch, and one validation."""
    per_epoch = max(1, len(fp.train_ids) // timing.candidate.batch_size)
    train = max(10, per_epoch) * timing.seconds_per_step
    return 1.1 * (train + validation_seconds(fp, timing, factor, True))


def choose(fp: Fingerprint, timings: list[Timing], budget: float, factor: float, memory_mb=None):
    """The preferred timing that gives MIN_EPOCHS, else the one giving the most epochs."""
    fits = [t for t in timings if memory_mb is None or (t.peak_mb or 0) < 0.6 * memory_mb]
    rank = {b: i for i, b in enumerate(BACKBONES)}
    fits.sort(
        key=lambda t: (rank[t.candidate.backbone], -t.candidate.crop[0] * t.candidate.crop[1])
    )
    if not fits:
        raise ConfigError("no candidate setup fits this device's memory; use a larger device")
    good = [t for t in fits if epochs(fp, t, budget) >= MIN_EPOCHS]
    best = good[0] if good else max(fits, key=lambda t: epochs(fp, t, budget))
    fastest = min(fits, key=lambda t: minimum_budget(fp, t, factor))
    least = minimum_budget(fp, fastest, factor)
    if budget < least:
        c = fastest.candidate
        raise ConfigError(
            f"--budget {budget:g}s is too small for one epoch of the {len(fp.train_ids)} training "
            f"images and one validation on this device: the fastest setup probed ({c.backbone}, "
            f"crop {list(c.crop)}, batch {c.batch_size}) takes {fastest.seconds_per_step:.2f} s "
            f"per step, so the minimum is {math.ceil(least)} s; give --budget "
            f"{math.ceil(least / 60)}m or more"
        )
    return best, bool(good)

"""The whole plan: split, network, resolution and crop, batch, loss, augmentation, schedule.

``make_plan`` applies the rules of rules.py in order; each step adds choices with their reason
and, where the data left it a guess, an assumption with its override. docs/plan.md gives the
experiment behind each rule, or says that there is none yet.
"""

import math
from dataclasses import replace

from seg.plan.fingerprint import Fingerprint
from seg.plan.groups import group_split, shared_groups
from seg.plan.probe import Timing
from seg.plan.rules import (
    IMBALANCE,
    MIN_EPOCHS,
    OHEM_SHARE,
    VAL_SHARE,
    Plan,
    choose,
    epochs,
    resolution,
    validation_seconds,
)

FEW_IMAGES = 30  # fewer training images than this: the plan says its numbers are shaky
FEW_FOR_OHEM = 10  # fewer training images: plain cross-entropy (docs/plan.md, few images)
FEW_EVIDENCE = "3 VOC images scored 6.2 and 4.6 mIoU, with OHEM and weights 1.9 and 3.4"
VAL_FRACTION = 0.2


def split_rule(plan: Plan, fp: Fingerprint, splits_dir: str) -> Fingerprint:
    """Keep the tree's validation split, or make one that shares no group with training."""
    if fp.val_ids:
        shared = shared_groups(fp.train_ids, fp.val_ids)
        if shared:
            plan.assumed.append((
                f"the tree's val split shares {len(shared)} file-name groups with train "
                f"({', '.join(shared[:3])}): its score overstates new data; kept as given",
                "hold whole groups out: python -m seg.doctor.sequences ROOT --hold-out GROUP --out "
                "DIR, then data.train_split=DIR/train.txt data.val_split=DIR/val.txt",
            ))  # fmt: skip
        return fp
    train, val, by_group = group_split(fp.train_ids, VAL_FRACTION)
    plan.splits = {"train": train, "val": val}
    groups = len(set(fp.groups))
    why = (
        f"{len(val)} of {len(fp.train_ids)} images: whole file-name groups ({groups} found), "
        "none shared with train"
        if by_group
        else f"{len(val)} of {len(fp.train_ids)} images, a seeded 20 % (no groups in file names)"
    )
    plan.add("data.train_split", f"{splits_dir}/train.txt", f"the tree has no val split; {why}")
    plan.add("data.val_split", f"{splits_dir}/val.txt", why)
    if not by_group:
        plan.assumed.append((
            "no groups (scenes, sequences, patients) found in file names: each image is taken "
            "as independent, and val is a seeded 20 % of them",
            f"if images come in groups, write id lists without shared groups and set "
            f"data.train_split=<train.txt> data.val_split=<val.txt> (now {splits_dir})",
        ))  # fmt: skip
    return replace(fp, train_ids=train, val_ids=val)


def network_rule(plan: Plan, fp: Fingerprint, timing: Timing, budget: float, enough: bool):
    c = timing.candidate
    n = epochs(fp, timing, budget)
    speed = f"{timing.seconds_per_step:.2f} s/step at {c.crop[0]}x{c.crop[1]} batch {c.batch_size}"
    why = f"probe: {speed} -> {n:.1f} epochs of {len(fp.train_ids)} images in the budget"
    plan.add("model.backbone", c.backbone, why)
    plan.add("model.weights", "imagenet", "ImageNet initialisation, as the FCN paper and peers")
    plan.add(
        "model.weights_required", False,
        "weights not in the cache nor downloadable: random init, as every run measured here",
    )  # fmt: skip
    plan.add("model.in_channels", fp.bands, f"{fp.bands}-band {fp.bit_depth}-bit images")
    plan.add("model.channels_last", True, "the CamVid recipe")
    plan.estimate.update(epochs=round(n, 1), seconds_per_step=timing.seconds_per_step)
    plan.assumed.append((
        "ImageNet weights where this machine has them or can download them, random init "
        "otherwise: the rules were measured from random init (no weights offline)",
        "model.weights=null trains from scratch on every machine alike",
    ))  # fmt: skip
    if not enough:
        plan.assumed.append((
            f"only {n:.1f} epochs fit the budget on this device (the plan aims at {MIN_EPOCHS})",
            "a longer --budget, or data.crop_size=[h,w] smaller",
        ))  # fmt: skip


def data_rule(plan: Plan, fp: Fingerprint, timing: Timing, factor: float, why: str) -> None:
    c, (h, w) = timing.candidate, fp.size
    plan.add("data.crop_size", list(c.crop), f"median image {h}x{w} at {factor:g}x; {why}")
    plan.add("data.base_size", None, "images scaled by their own size: sizes may differ")
    low, high = round(0.5 * factor, 2), round(1.5 * factor, 2)
    plan.add("data.scale_range", [low, high], f"the recipe's 0.5-1.5 times resolution {factor:g}")
    plan.add("model.eval_scale", factor, "validated at the training resolution")
    plan.add("data.batch_size", c.batch_size, "the recipe's 4, at most half of the images")
    plan.add("data.hflip", True, "the CamVid recipe (streets); no experiment on other data yet")
    rgb8 = fp.bands == 3 and fp.bit_depth == 8
    jitter = 0.3 if rgb8 else 0.0
    plan.add("data.color_jitter", jitter, f"{fp.bands}-band {fp.bit_depth}-bit; recipe 0.3 on RGB")
    plan.add("data.in_channels", fp.bands, "measured by the doctor")
    plan.add("model.eval_flip", True, "flip TTA: +0.2 mIoU held out on CamVid (recipe.md)")


def loss_rule(plan: Plan, fp: Fingerprint, timing: Timing) -> None:
    present = [(s, n) for n, s in zip(fp.class_names, fp.shares, strict=True) if s > 0]
    (low, rare), (high, common) = min(present), max(present)
    ratio = high / low
    shares = f"{common} {100 * high:.1f} % / {rare} {100 * low:.2g} % = {ratio:.0f}x"
    n = len(fp.train_ids)
    kept = round(OHEM_SHARE * timing.candidate.batch_size * math.prod(timing.candidate.crop))
    if n < FEW_FOR_OHEM:  # rare classes then rest on a handful of objects
        why = f"{n} training images < {FEW_FOR_OHEM}: {FEW_EVIDENCE}"
        plan.add("model.loss", "ce", why)
        plan.add("model.class_weights", None, f"{n} training images (imbalance {ratio:.0f}x)")
        plan.assumed.append((
            f"few images ({n} to train): plain cross-entropy without class weights, although "
            f"the classes' shares differ {ratio:.0f}x",
            f"the recipe's loss: model.loss=ohem model.ohem_min_kept={kept} "
            "model.class_weights=median_frequency_sqrt",
        ))  # fmt: skip
    elif ratio >= IMBALANCE:
        plan.add("model.loss", "ohem", f"imbalance {shares} >= {IMBALANCE}x; CamVid +1.5 mIoU")
        plan.add("model.ohem_min_kept", kept, "the recipe's share: 22.6 % of a batch's pixels")
        plan.add("model.class_weights", "median_frequency_sqrt", f"imbalance {ratio:.0f}x")
    else:
        plan.add("model.loss", "ce", f"imbalance {shares} < {IMBALANCE}x")
        plan.add("model.class_weights", None, f"imbalance {ratio:.0f}x < {IMBALANCE}x")
    absent = [n for n, s in zip(fp.class_names, fp.shares, strict=True) if s == 0]
    if absent:
        plan.assumed.append((
            f"classes with no pixels in any mask: {', '.join(absent)}; kept as classes",
            "give --class-names with only the classes you have, or map them with --label-map",
        ))  # fmt: skip


def schedule_rule(plan: Plan, fp: Fingerprint, timing: Timing, budget: float, text: str, factor):
    steps = (1 - VAL_SHARE) * budget / timing.seconds_per_step
    warmup = int(min(50, max(10, round(0.05 * steps))))
    plan.add("model.optimizer", "adamw", "the CamVid recipe")
    plan.add("model.lr", 0.004, "the CamVid recipe: 36.2 vs 32.8 mIoU held out at 2e-3")
    plan.add("model.weight_decay", 0.0001, "the CamVid recipe")
    plan.add("model.poly_power", 0.9, "poly decay over the budget's steps")
    plan.add("model.warmup_iters", warmup, f"5 % of about {steps:.0f} steps, 10-50; timed")
    plan.add("trainer.budget", text, "fixes the steps on the machine that trains")
    plan.add("trainer.max_epochs", -1, "the budget ends training")
    plan.add("trainer.precision", "auto-mixed", "bf16 where the device has it, else fp32")
    val = validation_seconds(fp, timing, factor, True)
    n = epochs(fp, timing, budget)
    every = max(1, math.ceil(n * val / (VAL_SHARE * budget)))
    plan.add(
        "trainer.check_val_every_n_epoch", every,
        f"one validation ~{val:.0f} s; {n:.1f} epochs; <= {100 * VAL_SHARE:g} % of the budget",
    )  # fmt: skip
    plan.estimate.update(steps=round(steps), validation_seconds=round(val, 1))


def data_assumptions(plan: Plan, fp: Fingerprint) -> None:
    if len(fp.train_ids) < FEW_IMAGES:
        plan.assumed.append((
            f"few images ({len(fp.train_ids)} to train, {len(fp.val_ids)} to validate): scores "
            f"are noisy, and the recipe's choices come from 367 CamVid images",
            "ImageNet weights matter most with few images: offline, pass a local copy with "
            "model.weights=/path/to/the/backbone/state_dict.pth",
        ))  # fmt: skip
    single = [n for n, p in zip(fp.class_names, fp.presence, strict=True) if p == 1]
    if single:
        plan.assumed.append((
            f"classes in only one of {fp.sampled} sampled masks: {', '.join(single)}; their "
            f"scores rest on very few objects",
            "add images of them, or merge them into another class with --label-map raw:id",
        ))  # fmt: skip
    if fp.encoding == "binary" and fp.raw_values == [0, 255]:
        plan.assumed.append((
            "masks hold only 0 and 255: read as binary, 255 = foreground",
            "--mask-encoding index (255 = void) if 255 marks pixels to ignore",
        ))  # fmt: skip


def make_plan(fp, timings, budget: float, text: str, splits_dir: str, memory_mb=None) -> Plan:
    """The plan for a fingerprint and the probe's timings; ``budget`` in seconds."""
    plan = Plan()
    fp = split_rule(plan, fp, splits_dir)
    factor, why = resolution(fp)
    timing, enough = choose(fp, timings, budget, factor, memory_mb)
    network_rule(plan, fp, timing, budget, enough)
    data_rule(plan, fp, timing, factor, why)
    loss_rule(plan, fp, timing)
    schedule_rule(plan, fp, timing, budget, text, factor)
    data_assumptions(plan, fp)
    plan.estimate.update(train_images=len(fp.train_ids), val_images=len(fp.val_ids))
    return plan

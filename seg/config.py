"""Config validation in one place, before any data is read or any network built.

``validate(config)`` takes the composed config as plain values (train.py and evaluate.py hand
over ``OmegaConf.to_container(cfg)``) and raises ``ConfigError`` naming the key, its value and
the valid range. Checked here because several of these fail late otherwise: a zero ``eval_scale``
after a whole training epoch, a reversed ``scale_range`` in a loader worker.
"""

import math
from numbers import Real

from seg.errors import ConfigError

# model.class_weights computed from the training split's class frequencies (train.py).
CLASS_WEIGHTINGS = ("median_frequency", "median_frequency_sqrt")
OPTIMIZERS = ("sgd", "adamw")
REDUCTIONS = ("mean", "sum")
# torch's optimizer implementations: auto (torch picks: for-loop on CPU, foreach on CUDA),
# for_loop, foreach (one kernel per op over all tensors), fused (one kernel per step).
OPTIMIZER_IMPLS = ("auto", "for_loop", "foreach", "fused")
# data.layout: seg/data/datamodule.py reads voc and folder; auto picks whichever root holds
LAYOUTS = ("voc", "folder", "auto")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CHOICES = {"optimizer": OPTIMIZERS, "loss_reduction": REDUCTIONS,
           "optimizer_impl": OPTIMIZER_IMPLS, "compile_mode": COMPILE_MODES}  # fmt: skip


def fail(key: str, value, valid: str) -> None:
    """Raise the one-paragraph error for ``key``."""
    raise ConfigError(
        f"{key}={value!r} is invalid: {valid}. Set it on the command line ({key}=...) or in "
        f"the config file"
    )


def number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


def integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_model(model: dict, num_classes: int | None) -> None:
    """Names and optimisation numbers of ``model.*``."""
    from seg.losses import parse_loss
    from seg.models import BACKBONES, DECODERS

    if "loss" in model:
        parse_loss(model["loss"])  # names and weights, as ConfigError

    for key, names in {"arch": DECODERS, "backbone": BACKBONES, **CHOICES}.items():
        if key in model and model[key] not in names:
            fail(f"model.{key}", model[key], f"choose one of {', '.join(names)}")
    if "lr" in model and not (number(model["lr"]) and model["lr"] > 0):
        fail("model.lr", model["lr"], "a learning rate must be a number > 0")
    if "momentum" in model and not (number(model["momentum"]) and 0 <= model["momentum"] < 1):
        fail("model.momentum", model["momentum"], "momentum must lie in [0, 1)")
    aux = model.get("aux_weight", 0)
    if not (number(aux) and aux >= 0):
        fail("model.aux_weight", aux, "a loss weight must be a number >= 0 (0 turns it off)")
    if aux and model.get("arch", "fcn8s") not in ("fcn16s", "fcn8s"):
        fail("model.aux_weight", aux, "deep supervision needs FCN-16s or FCN-8s's coarser "
             "scores; use model=fcn8s or model.aux_weight=0")  # fmt: skip
    bn = model.get("bn_momentum")
    if bn is not None and not (number(bn) and 0 < bn <= 1):
        fail("model.bn_momentum", bn, "use a number in (0, 1], or null for the backbone's own")
    if model.get("channels_last", "auto") not in (True, False, "auto"):
        fail("model.channels_last", model["channels_last"], "use true, false or auto")
    if "eval_scale" in model and not (number(model["eval_scale"]) and model["eval_scale"] > 0):
        fail("model.eval_scale", model["eval_scale"], "a resize factor must be a number > 0")
    weights = model.get("class_weights")
    if isinstance(weights, list):
        if not all(number(w) and w >= 0 for w in weights):
            fail("model.class_weights", weights, "class weights must be numbers >= 0")
        if num_classes is not None and len(weights) != num_classes:
            fail("model.class_weights", weights, f"give one weight per class ({num_classes})")
    elif weights is not None and weights not in CLASS_WEIGHTINGS:
        fail("model.class_weights", weights,
             f"use null, {', '.join(CLASS_WEIGHTINGS)} or a list of numbers")  # fmt: skip


def check_data(data: dict, channels: int) -> None:
    """Layout, batch sizes, workers, crop and scale ranges, normalisation of ``data.*``."""
    if "layout" in data and data["layout"] not in LAYOUTS:
        fail("data.layout", data["layout"], f"choose one of {', '.join(LAYOUTS)}")
    for key in ("batch_size", "val_batch_size"):
        if key in data and not (integer(data[key]) and data[key] >= 1):
            fail(f"data.{key}", data[key], "a batch size must be an integer >= 1")
    bad = data.get("max_bad_samples")
    if bad is not None and not (integer(bad) and bad >= 0):
        fail("data.max_bad_samples", bad, "an integer >= 0 (0: stop at the first unreadable one)")
    if "num_workers" in data and not (integer(data["num_workers"]) and data["num_workers"] >= 0):
        fail("data.num_workers", data["num_workers"], "an integer >= 0 (0: load in the process)")
    crop = data.get("crop_size")
    sizes = crop if isinstance(crop, list) else [crop]
    if "crop_size" in data and not (
        len(sizes) in (1, 2) and all(integer(s) and s > 0 for s in sizes)
    ):
        fail("data.crop_size", crop, "one positive integer or [height, width]")
    scale = data.get("scale_range")
    if "scale_range" in data and not (
        isinstance(scale, list) and len(scale) == 2 and all(number(s) and s > 0 for s in scale)
        and scale[0] <= scale[1]
    ):  # fmt: skip
        fail("data.scale_range", scale, "two positive numbers [low, high] with low <= high")
    for key in ("mean", "std"):
        values = data.get(key)
        if key in data and not (
            isinstance(values, list) and len(values) == channels and all(map(number, values))
        ):
            fail(f"data.{key}", values, f"one number per image channel ({channels})")
    if any(s <= 0 for s in data.get("std") or []):
        fail("data.std", data["std"], "standard deviations must be > 0 (they divide)")
    effective = data.get("effective_batch_size")
    if effective is not None and not (integer(effective) and effective >= 1):
        fail("data.effective_batch_size", effective, "an integer >= 1, or null for data.batch_size")


def missing_keys(config: dict, prefix: str = "") -> list[str]:
    """Keys left at OmegaConf's mandatory marker ``???`` (e.g. eval's ``ckpt_path``)."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            found += missing_keys(value, f"{prefix}{key}.")
        elif value == "???":
            found.append(f"{prefix}{key}")
    return found


def validate(config: dict) -> None:
    """Check the keys of a composed train or eval config; raise the first ``ConfigError``."""
    missing = missing_keys(config)
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} must be given: add {missing[0]}=<value> to the command line "
            f"(see the comments in configs/ for what it takes)"
        )
    model, data = config.get("model") or {}, config.get("data") or {}
    names = data.get("class_names")
    check_model(model, len(names) if isinstance(names, list) else None)
    data_bands = data.get("in_channels", 3)
    bands = model.get("in_channels", data_bands)
    if "in_channels" in model and "in_channels" in data and bands != data_bands:
        fail("model.in_channels", bands,
             f"the data has data.in_channels={data_bands} bands and the network must read as "
             f"many; set both keys to the same number")  # fmt: skip
    check_data(data, int(bands))

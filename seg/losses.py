"""Training losses: ``model.loss`` is a name or a weighted sum ``{name: weight}``.

Every loss takes logits ``(N, K, H, W)`` (any dtype; computed in float32) and masks ``(N, H, W)``
with ``ignore_index`` pixels that never contribute, neither to the value nor to the gradient.
``ce`` and ``ohem`` are torch's cross-entropy; ``dice``, ``focal``, ``lovasz`` and ``tversky`` are
segmentation_models_pytorch's (imported on first use, so ``ce`` runs need no import of it).

- OHEM: Shrivastava et al., CVPR 2016; per-pixel form as in BiSeNet / mmsegmentation's
  ``OHEMPixelSampler``: keep pixels whose true-class probability is below ``ohem_thresh``, and at
  least the ``ohem_min_kept`` hardest.
- Lovász-softmax: Berman et al., CVPR 2018. Focal: Lin et al., ICCV 2017 (smp's one-vs-rest form).
  Tversky: Salehi et al., 2017, with their alpha = 0.3 (false positives), beta = 0.7 (false
  negatives): missed pixels of a thin class cost more than false alarms (0.5 / 0.5 is Dice).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from seg.errors import ConfigError

Loss = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class LossOptions:
    """What the losses need beyond logits and masks; plain values from the module's hparams."""

    ignore_index: int = 255
    class_weights: list[float] | None = None
    reduction: str = "mean"  # ce only: "sum" is the FCN paper's unnormalised loss
    label_smoothing: float = 0.0
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000


def _weight(opts: LossOptions, logits: Tensor) -> Tensor | None:
    if opts.class_weights is None:
        return None
    return torch.tensor(opts.class_weights, dtype=torch.float32, device=logits.device)


def cross_entropy(opts: LossOptions) -> Loss:
    def loss(logits: Tensor, masks: Tensor) -> Tensor:
        return F.cross_entropy(
            logits.float(),
            masks,
            weight=_weight(opts, logits),
            ignore_index=opts.ignore_index,
            reduction=opts.reduction,
            label_smoothing=opts.label_smoothing,
        )

    return loss


def ohem(opts: LossOptions) -> Loss:
    """Weighted cross-entropy averaged over the hard pixels only."""

    def loss(logits: Tensor, masks: Tensor) -> Tensor:
        logits = logits.float()
        pixel = F.cross_entropy(
            logits,
            masks,
            weight=_weight(opts, logits),
            ignore_index=opts.ignore_index,
            reduction="none",
            label_smoothing=opts.label_smoothing,
        )  # (N, H, W), 0 at ignored pixels
        valid = masks != opts.ignore_index
        with torch.no_grad():
            prob = logits.softmax(dim=1).gather(1, masks.clamp_max(logits.shape[1] - 1)[:, None])
            prob = prob[:, 0].masked_fill(~valid, float("inf"))  # ignored: never kept
            kept = valid & (prob < opts.ohem_thresh)
            if kept.sum() < opts.ohem_min_kept:
                k = min(opts.ohem_min_kept, int(valid.sum()))
                kept = valid & (prob <= prob.flatten().kthvalue(max(k, 1)).values)
        w = _weight(opts, logits)
        denom = kept.sum() if w is None else w[masks.clamp_max(len(w) - 1)][kept].sum()
        return pixel[kept].sum() / denom.clamp_min(1e-12)

    return loss


def _smp(name: str) -> Callable[[LossOptions], Loss]:
    """A segmentation_models_pytorch multiclass loss, fed float32 logits."""

    def build(opts: LossOptions) -> Loss:
        from segmentation_models_pytorch import losses  # timm import: only when asked for

        kwargs = {"mode": "multiclass", "ignore_index": opts.ignore_index}
        if name != "LovaszLoss":  # Lovász-softmax has no class weights
            kwargs["class_weights"] = opts.class_weights
        if name == "TverskyLoss":
            kwargs |= {"alpha": 0.3, "beta": 0.7}
        criterion = getattr(losses, name)(**kwargs)
        return lambda logits, masks: criterion(logits.float(), masks)

    return build


LOSSES: dict[str, Callable[[LossOptions], Loss]] = {
    "ce": cross_entropy,
    "ohem": ohem,
    "dice": _smp("DiceLoss"),
    "focal": _smp("FocalLoss"),
    "lovasz": _smp("LovaszLoss"),
    "tversky": _smp("TverskyLoss"),
}


def parse_loss(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"ce"`` or ``{"ce": 1.0, "lovasz": 0.5}`` -> a plain ``{name: weight}`` dict, checked."""
    if not isinstance(spec, str | Mapping):
        raise ConfigError(
            f"model.loss={spec!r} is neither a loss name nor a mapping of names to weights; "
            f"write model.loss=ce or 'model.loss={{ce: 1, dice: 0.5}}' (names: {sorted(LOSSES)})"
        )
    terms = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    if not terms:
        raise ConfigError("model.loss is empty; give a loss name or {name: weight, ...}")
    for name, weight in terms.items():
        if name not in LOSSES:
            raise ConfigError(
                f"model.loss has unknown loss {name!r}; valid names are {sorted(LOSSES)}, "
                f"given alone (model.loss=lovasz) or weighted ('model.loss={{ce: 1, lovasz: 0.5}}')"
            )
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ConfigError(f"model.loss weight of {name!r} must be a number, got {weight!r}")
        if not weight >= 0:  # a negative weight would maximise that loss
            raise ConfigError(f"model.loss weight of {name!r} is {weight}; weights must be >= 0")
    if not any(terms.values()):
        raise ConfigError(f"model.loss={terms} weighs every term 0; give one a weight > 0")
    return {name: float(weight) for name, weight in terms.items()}


class WeightedSum:
    """``sum(weight * loss(logits, masks))`` over the terms of a loss spec."""

    def __init__(self, spec: str | Mapping[str, float], opts: LossOptions) -> None:
        self.weights = parse_loss(spec)
        self.terms = {name: LOSSES[name](opts) for name in self.weights}
        self.ignore_index = opts.ignore_index

    def __call__(self, logits: Tensor, masks: Tensor) -> Tensor:
        if not (masks != self.ignore_index).any():
            # Nothing to learn from (a crop of void only): 0 with a zero gradient, where torch's
            # mean cross-entropy would be NaN and smp's Lovász an empty tensor.
            return logits.float().sum() * 0.0
        parts = [w * self.terms[name](logits, masks) for name, w in self.weights.items()]
        return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


def build_loss(spec: str | Mapping[str, float], opts: LossOptions | None = None) -> WeightedSum:
    """The training loss of ``model.loss`` (see the module docstring)."""
    return WeightedSum(spec, opts or LossOptions())

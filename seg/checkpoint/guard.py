"""What may go into a checkpoint: finite weights that have not exploded, offline-loadable facts.

A diverging run first grows its weights by orders of magnitude while the loss is still finite,
then turns them NaN a few steps later. Refusing only NaN weights left ``last.ckpt`` holding
finite but exploded weights (max |w| about 8e19) that diverge again at once on resume; refusing
also a growth of ``max_growth`` times the largest weight at the start keeps ``last.ckpt`` a
state worth resuming from, as the divergence message advises.

Weights already grown ``HEALTHY_GROWTH`` times are still written, but the ``last.ckpt`` they
replace is kept as ``last-healthy.ckpt`` (until a healthy ``last.ckpt`` is written again), and
the divergence message names that file: resuming from weights that are already exploding with a
lower learning rate diverged again, resuming from the healthy one trains on.

The checks run in ``AtomicCheckpointIO`` (every checkpoint, full or weights-only, passes through
it), not in ``on_save_checkpoint``, which Lightning skips for weights-only checkpoints.
"""

import os

import pytorch_lightning as pl
import torch

from seg.checkpoint.write import LastCheckpoint

MAX_GROWTH = 1000.0
HEALTHY_GROWTH = 10.0  # beyond this multiple of the start, a last.ckpt is not one to resume from
HEALTHY_NAME = "last-healthy.ckpt"
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")  # not weights


def largest_weight(state: dict[str, torch.Tensor]) -> float:
    """The largest |value| over the floating-point weights of a state dict."""
    values = [
        v.detach().abs().max()
        for k, v in state.items()
        if v.is_floating_point() and v.numel() and not k.endswith(STATISTICS)
    ]
    return float(torch.stack(values).max()) if values else 0.0


class CheckpointGuard(pl.Callback):
    """Refuse non-finite or exploded weights; store ``weights=None`` so reloading stays offline.

    ``max_growth``: refuse weights whose largest |value| exceeds this multiple of the largest at
    the start of the run (at least 1): training has diverged. The reference is kept in
    checkpoints, so a resumed run measures against the same start.
    """

    def __init__(self, max_growth: float = MAX_GROWTH) -> None:
        self.max_growth = max_growth
        self.reference: float | None = None
        self.last_healthy = True  # whether the last.ckpt written last holds healthy weights
        self.trainer: pl.Trainer | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.reference is None:  # not restored from a checkpoint
            self.reference = max(largest_weight(pl_module.state_dict()), 1.0)

    def state_dict(self) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reference = state_dict.get("reference")

    def check(self, checkpoint: dict, path: str | None = None) -> None:
        """Called by the writer for every checkpoint: fix its facts, refuse bad weights, and keep
        a healthy ``last.ckpt`` that an unhealthy one would replace."""
        hparams = checkpoint.get("hyper_parameters")
        if hparams is not None:  # every weight is in the file: reloading must not fetch any
            hparams["weights"] = None
        state, when = checkpoint["state_dict"], self.when(checkpoint)
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise FloatingPointError(
                f"the weights became non-finite (NaN/inf in {len(bad)} tensors, first "
                f"{', '.join(bad[:3])}) {when}; this checkpoint was not written and the earlier "
                f"ones are kept. {self.advice(hparams)}"
            )
        largest, start = largest_weight(state), self.reference or 1.0
        if largest > self.max_growth * start:
            raise FloatingPointError(
                f"training diverged: the largest weight grew to {largest:.3g} {when}, over "
                f"{self.max_growth:g} times its start ({start:.3g}); this checkpoint was not "
                f"written and the earlier ones are kept. {self.advice(hparams)}"
            )
        if path is not None and os.path.basename(path) == "last.ckpt":
            self.keep_healthy(path, healthy=largest <= HEALTHY_GROWTH * start)

    def keep_healthy(self, path: str, healthy: bool) -> None:
        """Move a healthy ``last.ckpt`` aside before unhealthy weights replace it."""
        kept = os.path.join(os.path.dirname(path), HEALTHY_NAME)
        self.last_healthy = healthy
        if healthy:
            if os.path.exists(kept) and os.path.exists(path):
                os.remove(kept)  # the new last.ckpt is healthy and newer
        elif os.path.exists(path) and not os.path.exists(kept):
            os.replace(path, kept)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        hint = self.resume_hint()
        if isinstance(exception, FloatingPointError) and hint not in str(exception):
            # The module's NaN-loss message names no file: name the one to resume from.
            exception.args = (f"{exception} {hint}",)

    @staticmethod
    def when(checkpoint: dict) -> str:
        return f"by step {checkpoint.get('global_step')} (epoch {checkpoint.get('epoch')})"

    def advice(self, hparams: dict | None) -> str:
        lr = (hparams or {}).get("lr", "?")
        return (
            f"Try a lower model.lr (now {lr}), model.loss_reduction=mean or "
            f"trainer.precision=32-true. {self.resume_hint()}"
        )

    def resume_hint(self) -> str:
        """Which checkpoint to resume from after a divergence stop, as a sentence."""
        callbacks = self.trainer.callbacks if self.trainer else []
        last = next((c for c in callbacks if isinstance(c, LastCheckpoint)), None)
        if last is None or not last.dirpath:
            return "Resume with ckpt_path=<a checkpoint written before> and a lower model.lr."
        kept, path = (os.path.join(last.dirpath, n) for n in (HEALTHY_NAME, "last.ckpt"))
        if os.path.isfile(kept):
            return f"Resume with ckpt_path={kept} and a lower model.lr."
        if os.path.isfile(path) and self.last_healthy:
            return f"Resume with ckpt_path={path} and a lower model.lr."
        if os.path.isfile(path):
            return (
                f"The checkpoints written ({path}) already hold weights over {HEALTHY_GROWTH:g} "
                f"times their start: start again with a lower model.lr."
            )
        return "No checkpoint was written before it: start again with a lower model.lr."

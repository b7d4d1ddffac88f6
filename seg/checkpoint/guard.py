"""What may go into a checkpoint: finite weights that have not exploded, offline-loadable facts.

A diverging run first grows its weights by orders of magnitude while the loss is still finite,
then turns them NaN a few steps later. Refusing only NaN weights left ``last.ckpt`` holding
finite but exploded weights (max |w| about 8e19) that diverge again at once on resume; refusing
also a growth of ``max_growth`` times the largest weight at the start keeps ``last.ckpt`` a
state worth resuming from, as the divergence message advises.
"""

import os

import pytorch_lightning as pl
import torch

from seg.checkpoint.write import LastCheckpoint

MAX_GROWTH = 1000.0


def largest_weight(module: torch.nn.Module) -> float:
    """The largest |value| over the module's floating-point parameters."""
    values = [p.detach().abs().max() for p in module.parameters() if p.is_floating_point()]
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

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.reference is None:  # not restored from a checkpoint
            self.reference = max(largest_weight(pl_module), 1.0)

    def state_dict(self) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reference = state_dict.get("reference")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # A checkpoint holds every weight: reloading it must not fetch ImageNet weights again.
        checkpoint["hyper_parameters"]["weights"] = None
        state = checkpoint["state_dict"]
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise FloatingPointError(
                f"the weights became non-finite (NaN/inf in {len(bad)} tensors, first "
                f"{', '.join(bad[:3])}) by step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}); this checkpoint was not written and the earlier "
                f"ones are kept. {advice(trainer, pl_module)}"
            )
        largest, limit = largest_weight(pl_module), self.max_growth * (self.reference or 1.0)
        if largest > limit:
            raise FloatingPointError(
                f"training diverged: the largest weight grew to {largest:.3g} by step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}), over {self.max_growth:g} "
                f"times its start ({self.reference:.3g}); this checkpoint was not written and "
                f"the earlier ones are kept. {advice(trainer, pl_module)}"
            )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        hint = resume_hint(trainer)
        if isinstance(exception, FloatingPointError) and hint not in str(exception):
            # The module's NaN-loss message names no file: name the one to resume from.
            exception.args = (f"{exception} {hint}",)


def advice(trainer, pl_module) -> str:
    lr = pl_module.hparams.get("lr", "?")
    return (
        f"Try a lower model.lr (now {lr}), model.loss_reduction=mean or "
        f"trainer.precision=32-true. {resume_hint(trainer)}"
    )


def resume_hint(trainer) -> str:
    """Which checkpoint to resume from after a divergence stop, as a sentence."""
    last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    if last is None or not last.dirpath:
        return "Resume with ckpt_path=<last good checkpoint>."
    path = os.path.join(last.dirpath, "last.ckpt")
    if not os.path.isfile(path):
        return "No checkpoint was written before it: start again with a lower model.lr."
    return f"Resume with ckpt_path={path} and a lower model.lr."
